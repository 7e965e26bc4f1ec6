//! `update`: change the resources of a running container (written by the cgroup commands work).
