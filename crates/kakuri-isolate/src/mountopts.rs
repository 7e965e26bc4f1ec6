//! Mount options of a config's `mounts[].options`, turned into what `mount(2)` and
//! `mount_setattr(2)` take.

/// Flags, propagation, filesystem data and recursive attributes of one mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags for the mount itself (`MS_BIND`, `MS_RDONLY`, ...).
    pub flags: libc::c_ulong,
    /// `MS_*` flags cleared by an option (`rw`, `dev`, `suid`, ...), so a remount can drop them.
    pub cleared: libc::c_ulong,
    /// Propagation changes, applied one after another (`MS_PRIVATE`, `MS_SHARED|MS_REC`, ...).
    pub propagation: Vec<libc::c_ulong>,
    /// Filesystem-specific data (`size=65536k`, `mode=755`, ...), comma-joined.
    pub data: String,
    /// Recursive attributes (`rro`, `rnosuid`, ...) as `MOUNT_ATTR_*` set/clear masks.
    pub rec_attr_set: u64,
    pub rec_attr_clr: u64,
    /// `idmap`/`ridmap`: an id-mapped bind mount.
    pub idmap: bool,
    /// `ridmap`: the id mapping applies to every mount of an `rbind`, not only the top one.
    pub ridmap: bool,
    /// `tmpcopyup`: a tmpfs gets a copy of the directory it covers (runc's option; other
    /// filesystem types ignore it, as with runc).
    pub tmpcopyup: bool,
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }

    pub fn is_recursive_bind(&self) -> bool {
        self.is_bind() && self.flags & libc::MS_REC != 0
    }
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// The mount options kakuri understands, for `features`.
pub const KNOWN_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "idmap",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "ridmap",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// Parse `options`. Unknown options are passed to the filesystem as data, as runc does.
pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let set = |o: &mut MountOptions, f: libc::c_ulong| {
            o.flags |= f;
            o.cleared &= !f;
        };
        let clr = |o: &mut MountOptions, f: libc::c_ulong| {
            o.flags &= !f;
            o.cleared |= f;
        };
        match opt.as_str() {
            "defaults" => {}
            "ro" => set(&mut o, libc::MS_RDONLY),
            "rw" => clr(&mut o, libc::MS_RDONLY),
            "nosuid" => set(&mut o, libc::MS_NOSUID),
            "suid" => clr(&mut o, libc::MS_NOSUID),
            "nodev" => set(&mut o, libc::MS_NODEV),
            "dev" => clr(&mut o, libc::MS_NODEV),
            "noexec" => set(&mut o, libc::MS_NOEXEC),
            "exec" => clr(&mut o, libc::MS_NOEXEC),
            "sync" => set(&mut o, libc::MS_SYNCHRONOUS),
            "async" => clr(&mut o, libc::MS_SYNCHRONOUS),
            "dirsync" => set(&mut o, libc::MS_DIRSYNC),
            "remount" => set(&mut o, libc::MS_REMOUNT),
            "mand" => set(&mut o, libc::MS_MANDLOCK),
            "nomand" => clr(&mut o, libc::MS_MANDLOCK),
            "atime" => clr(&mut o, libc::MS_NOATIME),
            "noatime" => set(&mut o, libc::MS_NOATIME),
            "diratime" => clr(&mut o, libc::MS_NODIRATIME),
            "nodiratime" => set(&mut o, libc::MS_NODIRATIME),
            "relatime" => set(&mut o, libc::MS_RELATIME),
            "norelatime" => clr(&mut o, libc::MS_RELATIME),
            "strictatime" => set(&mut o, libc::MS_STRICTATIME),
            "nostrictatime" => clr(&mut o, libc::MS_STRICTATIME),
            "iversion" => set(&mut o, libc::MS_I_VERSION),
            "noiversion" => clr(&mut o, libc::MS_I_VERSION),
            "lazytime" => set(&mut o, libc::MS_LAZYTIME),
            "nolazytime" => clr(&mut o, libc::MS_LAZYTIME),
            "silent" => set(&mut o, libc::MS_SILENT),
            "loud" => clr(&mut o, libc::MS_SILENT),
            "nosymfollow" => set(&mut o, libc::MS_NOSYMFOLLOW),
            "symfollow" => clr(&mut o, libc::MS_NOSYMFOLLOW),
            "bind" => set(&mut o, libc::MS_BIND),
            "rbind" => set(&mut o, libc::MS_BIND | libc::MS_REC),
            "private" => o.propagation.push(libc::MS_PRIVATE),
            "rprivate" => o.propagation.push(libc::MS_PRIVATE | libc::MS_REC),
            "shared" => o.propagation.push(libc::MS_SHARED),
            "rshared" => o.propagation.push(libc::MS_SHARED | libc::MS_REC),
            "slave" => o.propagation.push(libc::MS_SLAVE),
            "rslave" => o.propagation.push(libc::MS_SLAVE | libc::MS_REC),
            "unbindable" => o.propagation.push(libc::MS_UNBINDABLE),
            "runbindable" => o.propagation.push(libc::MS_UNBINDABLE | libc::MS_REC),
            "rro" => o.rec_attr_set |= MOUNT_ATTR_RDONLY,
            "rrw" => o.rec_attr_clr |= MOUNT_ATTR_RDONLY,
            "rnosuid" => o.rec_attr_set |= MOUNT_ATTR_NOSUID,
            "rsuid" => o.rec_attr_clr |= MOUNT_ATTR_NOSUID,
            "rnodev" => o.rec_attr_set |= MOUNT_ATTR_NODEV,
            "rdev" => o.rec_attr_clr |= MOUNT_ATTR_NODEV,
            "rnoexec" => o.rec_attr_set |= MOUNT_ATTR_NOEXEC,
            "rexec" => o.rec_attr_clr |= MOUNT_ATTR_NOEXEC,
            "rnodiratime" => o.rec_attr_set |= MOUNT_ATTR_NODIRATIME,
            "rdiratime" => o.rec_attr_clr |= MOUNT_ATTR_NODIRATIME,
            "rrelatime" => {
                o.rec_attr_clr |= MOUNT_ATTR_ATIME_MASK;
                o.rec_attr_set |= MOUNT_ATTR_RELATIME;
            }
            "rnorelatime" | "ratime" => o.rec_attr_clr |= MOUNT_ATTR_ATIME_MASK,
            "rnoatime" => {
                o.rec_attr_clr |= MOUNT_ATTR_ATIME_MASK;
                o.rec_attr_set |= MOUNT_ATTR_NOATIME;
            }
            "rstrictatime" => {
                o.rec_attr_clr |= MOUNT_ATTR_ATIME_MASK;
                o.rec_attr_set |= MOUNT_ATTR_STRICTATIME;
            }
            "rnostrictatime" => o.rec_attr_clr |= MOUNT_ATTR_ATIME_MASK,
            "rnosymfollow" => o.rec_attr_set |= MOUNT_ATTR_NOSYMFOLLOW,
            "rsymfollow" => o.rec_attr_clr |= MOUNT_ATTR_NOSYMFOLLOW,
            "idmap" => o.idmap = true,
            "ridmap" => {
                o.idmap = true;
                o.ridmap = true;
            }
            "tmpcopyup" => o.tmpcopyup = true,
            other => data.push(other),
        }
    }
    o.data = data.join(",");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> MountOptions {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
    }

    #[test]
    fn later_option_wins() {
        let o = p(&["ro", "rw"]);
        assert_eq!(o.flags & libc::MS_RDONLY, 0);
        assert_ne!(o.cleared & libc::MS_RDONLY, 0);
    }

    #[test]
    fn bind_and_propagation() {
        let o = p(&["rbind", "rprivate", "ro"]);
        assert!(o.is_recursive_bind());
        assert_eq!(o.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert_ne!(o.flags & libc::MS_RDONLY, 0);
    }

    #[test]
    fn recursive_attrs() {
        let o = p(&["rbind", "rro", "rnosuid"]);
        assert_eq!(o.rec_attr_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
        assert_eq!(o.data, "");
    }
}
