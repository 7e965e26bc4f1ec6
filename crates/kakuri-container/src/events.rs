//! `events`: stats and OOM events of a container.
