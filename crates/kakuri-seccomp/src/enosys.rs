//! The -ENOSYS prefix runc puts in front of restrictive filters.
//!
//! A profile lists the syscalls its author knew about. A syscall added to the kernel later
//! would hit the default action (usually EPERM, or a kill), and programs that probe for a new
//! syscall expect ENOSYS to fall back to an older one. So, like runc, when the default action
//! is not permissive, syscall numbers above the largest number the profile names (for each
//! architecture listed in `linux.seccomp.architectures`) return ENOSYS before the libseccomp
//! filter runs. On s390/s390x syscall 0 also returns ENOSYS: the kernel leaves unknown
//! "large" syscalls there. On x86_64, x32 syscalls (bit 30 set) are checked against the x32
//! maximum when SCMP_ARCH_X32 is listed and otherwise left to the filter.
//!
//! Layout (every conditional jump is short and local; long distances use `ja`, whose offset
//! is 32 bits wide):
//!
//! ```text
//!   ld  [4]                      ; arch
//!   jeq ARCH_1, 0, 1 ; ja SECTION_1
//!   ...
//!   ja  FILTER
//! SECTION_n:
//!   ld  [0]                      ; syscall number
//!   ... jgt MAX -> ENOSYS, else -> TO_FILTER
//!   ENOSYS:    ret ERRNO(ENOSYS)
//!   TO_FILTER: ja FILTER
//! FILTER: (the libseccomp program)
//! ```

use kakuri_spec::oci::{Arch, LinuxSeccomp, LinuxSeccompAction};
use libseccomp::{ScmpArch, ScmpSyscall};

use crate::names;

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JMP_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const BPF_JMP_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JMP_JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const BPF_JMP_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in struct seccomp_data.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

const AUDIT_ARCH_X86_64: u32 = Arch::ScmpArchX86_64 as u32;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Where a jump inside a section goes.
#[derive(Clone, Copy)]
enum To {
    Next,
    Enosys,
    Filter,
    /// Index within the section.
    At(usize),
}

enum Step {
    LoadNr,
    Jump { code: u16, k: u32, jt: To, jf: To },
}

/// One architecture's check, ending with `ret ENOSYS; ja FILTER`.
struct Section {
    audit_arch: u32,
    steps: Vec<Step>,
}

impl Section {
    fn len(&self) -> usize {
        self.steps.len() + 2
    }

    /// Emit the section; `to_filter` is the `ja` offset from its last instruction to FILTER.
    fn emit(&self, out: &mut Vec<libc::sock_filter>, to_filter: u32) {
        let enosys = self.steps.len();
        let filter = enosys + 1;
        let rel = |from: usize, to: To| -> u8 {
            let target = match to {
                To::Next => from + 1,
                To::Enosys => enosys,
                To::Filter => filter,
                To::At(i) => i,
            };
            // Sections are a handful of instructions: these offsets are tiny.
            (target - from - 1) as u8
        };
        for (i, step) in self.steps.iter().enumerate() {
            out.push(match *step {
                Step::LoadNr => insn(BPF_LD_W_ABS, 0, 0, DATA_NR),
                Step::Jump { code, k, jt, jf } => insn(code, rel(i, jt), rel(i, jf), k),
            });
        }
        out.push(insn(BPF_RET_K, 0, 0, RET_ENOSYS));
        out.push(insn(BPF_JMP_JA, 0, 0, to_filter));
    }
}

/// The largest syscall number any name of the profile has on `arch` (0 when none).
fn largest_syscall(seccomp: &LinuxSeccomp, arch: ScmpArch) -> u32 {
    seccomp
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|call| call.names().iter())
        .filter_map(|name| ScmpSyscall::from_name_by_arch(name, arch).ok())
        .filter_map(|nr| u32::try_from(nr.as_raw_syscall()).ok())
        .max()
        .unwrap_or(0)
}

/// The kernel's AUDIT_ARCH value for an architecture of the profile.
fn audit_arch(arch: Arch) -> u32 {
    match arch {
        // x32 syscalls arrive as x86_64 with bit 30 set in the number.
        Arch::ScmpArchX32 => AUDIT_ARCH_X86_64,
        Arch::ScmpArchNative => {
            let native = ScmpArch::native();
            names::ARCHES
                .iter()
                .find(|(a, _, scmp)| *scmp == native && *a != Arch::ScmpArchNative)
                .map_or(0, |(a, _, _)| audit_arch(*a))
        }
        // The SCMP_ARCH_* values are the AUDIT_ARCH_* values for all other architectures.
        other => other as u32,
    }
}

/// The stub to put in front of the libseccomp program, or nothing when it is not needed.
pub(crate) fn stub(seccomp: &LinuxSeccomp) -> Vec<libc::sock_filter> {
    let default = seccomp.default_action();
    if matches!(
        default,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    ) {
        return Vec::new();
    }
    if default == LinuxSeccompAction::ScmpActErrno
        && seccomp.default_errno_ret() == Some(libc::ENOSYS as u32)
    {
        // Unknown syscalls get ENOSYS anyway.
        return Vec::new();
    }

    // (audit arch, largest x86_64-or-other syscall, largest x32 syscall); 0 = none listed.
    let mut maxima: Vec<(u32, u32, u32)> = Vec::new();
    for arch in seccomp.architectures().iter().flatten() {
        let (_, scmp) = names::arch_entry(*arch);
        let audit = audit_arch(*arch);
        let largest = largest_syscall(seccomp, scmp);
        if audit == 0 || largest == 0 {
            log::debug!(
                "seccomp: no -ENOSYS stub for {arch:?}: the profile names none of its syscalls"
            );
            continue;
        }
        let is_x32 = *arch == Arch::ScmpArchX32
            || (*arch == Arch::ScmpArchNative && ScmpArch::native() == ScmpArch::X32);
        let entry = match maxima.iter_mut().find(|(a, _, _)| *a == audit) {
            Some(entry) => entry,
            None => {
                maxima.push((audit, 0, 0));
                maxima.last_mut().expect("just pushed")
            }
        };
        if is_x32 {
            entry.2 = entry.2.max(largest);
        } else {
            entry.1 = entry.1.max(largest);
        }
    }
    if maxima.is_empty() {
        return Vec::new();
    }

    let sections: Vec<Section> = maxima
        .iter()
        .map(|&(audit_arch, max, x32_max)| {
            let mut steps = vec![Step::LoadNr];
            let check = |max: u32| {
                if max == 0 {
                    // This ABI is not listed: leave it to the filter (bad-arch action).
                    Step::Jump {
                        code: BPF_JMP_JEQ_K,
                        k: 0,
                        jt: To::Filter,
                        jf: To::Filter,
                    }
                } else {
                    Step::Jump {
                        code: BPF_JMP_JGT_K,
                        k: max,
                        jt: To::Enosys,
                        jf: To::Filter,
                    }
                }
            };
            if audit_arch == AUDIT_ARCH_X86_64 {
                // jset bit30 -> x32 check (step 3), else x86_64 check (step 2).
                steps.push(Step::Jump {
                    code: BPF_JMP_JSET_K,
                    k: X32_SYSCALL_BIT,
                    jt: To::At(3),
                    jf: To::Next,
                });
                steps.push(check(max));
                steps.push(check(x32_max));
            } else {
                if audit_arch == Arch::ScmpArchS390 as u32
                    || audit_arch == Arch::ScmpArchS390x as u32
                {
                    steps.push(Step::Jump {
                        code: BPF_JMP_JEQ_K,
                        k: 0,
                        jt: To::Enosys,
                        jf: To::Next,
                    });
                }
                steps.push(check(max));
            }
            Section { audit_arch, steps }
        })
        .collect();

    // ld [4]; per arch: jeq + ja; ja FILTER; then the sections.
    let head = 1 + 2 * sections.len() + 1;
    let total = head + sections.iter().map(Section::len).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.push(insn(BPF_LD_W_ABS, 0, 0, DATA_ARCH));
    let mut start = head;
    for section in &sections {
        out.push(insn(BPF_JMP_JEQ_K, 0, 1, section.audit_arch));
        let ja_at = out.len();
        out.push(insn(BPF_JMP_JA, 0, 0, (start - ja_at - 1) as u32));
        start += section.len();
    }
    let ja_at = out.len();
    out.push(insn(BPF_JMP_JA, 0, 0, (total - ja_at - 1) as u32));
    for section in &sections {
        let last = out.len() + section.len() - 1;
        section.emit(&mut out, (total - last - 1) as u32);
    }
    debug_assert_eq!(out.len(), total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).expect("test profile")
    }

    /// Where the stub sends a syscall.
    #[derive(Debug, PartialEq, Eq)]
    enum Verdict {
        Enosys,
        Filter,
    }

    /// Run the stub for (arch, nr): a classic-BPF interpreter for the instructions it uses.
    fn run(stub: &[libc::sock_filter], arch: u32, nr: u32) -> Verdict {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            if pc == stub.len() {
                return Verdict::Filter;
            }
            let i = stub[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => {
                    acc = match i.k {
                        DATA_NR => nr,
                        DATA_ARCH => arch,
                        k => panic!("load of offset {k}"),
                    }
                }
                BPF_JMP_JA => pc += i.k as usize,
                BPF_JMP_JEQ_K | BPF_JMP_JGT_K | BPF_JMP_JSET_K => {
                    let taken = match i.code {
                        BPF_JMP_JEQ_K => acc == i.k,
                        BPF_JMP_JGT_K => acc > i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                BPF_RET_K => {
                    assert_eq!(i.k, RET_ENOSYS);
                    return Verdict::Enosys;
                }
                code => panic!("unexpected opcode {code:#x}"),
            }
            assert!(pc <= stub.len(), "jump past the stub");
        }
    }

    fn nr(name: &str, arch: ScmpArch) -> u32 {
        ScmpSyscall::from_name_by_arch(name, arch)
            .expect("known syscall")
            .as_raw_syscall() as u32
    }

    const I386: u32 = Arch::ScmpArchX86 as u32;
    const S390X: u32 = Arch::ScmpArchS390x as u32;

    #[test]
    fn no_stub_when_not_needed() {
        for json in [
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]}),
            serde_json::json!({"defaultAction": "SCMP_ACT_TRACE", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]}),
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}),
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}),
        ] {
            assert!(stub(&profile(json.clone())).is_empty(), "{json}");
        }
    }

    #[test]
    fn x86_64_x32_and_i386_maxima() {
        let seccomp = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_KILL_PROCESS",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["read", "write", "getpid", "openat"], "action": "SCMP_ACT_ALLOW"}]
        }));
        let s = stub(&seccomp);
        let x64 = AUDIT_ARCH_X86_64;
        let openat = nr("openat", ScmpArch::X8664);
        assert_eq!(run(&s, x64, openat), Verdict::Filter);
        assert_eq!(run(&s, x64, openat + 1), Verdict::Enosys);
        assert_eq!(run(&s, x64, 0), Verdict::Filter);
        // x32: numbers carry bit 30 and are checked against the x32 maximum.
        let openat32 = nr("openat", ScmpArch::X32);
        assert_ne!(openat32 & X32_SYSCALL_BIT, 0);
        assert_eq!(run(&s, x64, openat32), Verdict::Filter);
        assert_eq!(run(&s, x64, openat32 + 1), Verdict::Enosys);
        // i386 has its own numbering.
        let openat_i386 = nr("openat", ScmpArch::X86);
        assert_eq!(run(&s, I386, openat_i386), Verdict::Filter);
        assert_eq!(run(&s, I386, openat_i386 + 1), Verdict::Enosys);
        // Other architectures are left to the filter (bad-arch action).
        assert_eq!(run(&s, S390X, 100_000), Verdict::Filter);
    }

    #[test]
    fn x32_unlisted_is_left_to_the_filter() {
        let seccomp = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
        }));
        let s = stub(&seccomp);
        assert_eq!(run(&s, AUDIT_ARCH_X86_64, 2), Verdict::Enosys);
        assert_eq!(run(&s, AUDIT_ARCH_X86_64, 1), Verdict::Filter);
        assert_eq!(
            run(&s, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 500),
            Verdict::Filter
        );
    }

    #[test]
    fn s390x_syscall_zero_gets_enosys() {
        let seccomp = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_S390X"],
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]
        }));
        let s = stub(&seccomp);
        let write = nr("write", ScmpArch::S390X);
        assert_eq!(run(&s, S390X, 0), Verdict::Enosys);
        assert_eq!(run(&s, S390X, write), Verdict::Filter);
        assert_eq!(run(&s, S390X, write + 1), Verdict::Enosys);
        assert_eq!(run(&s, AUDIT_ARCH_X86_64, 100_000), Verdict::Filter);
    }

    #[test]
    fn many_architectures_keep_jumps_in_range() {
        let arches: Vec<&str> = names::ARCHES
            .iter()
            .map(|e| e.1)
            .filter(|n| {
                ![
                    "SCMP_ARCH_LOONGARCH64",
                    "SCMP_ARCH_M68K",
                    "SCMP_ARCH_SH",
                    "SCMP_ARCH_SHEB",
                ]
                .contains(n)
            })
            .collect();
        let seccomp = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": arches,
            "syscalls": [{"names": ["read", "write", "openat", "close"], "action": "SCMP_ACT_ALLOW"}]
        }));
        let s = stub(&seccomp);
        assert!(s.len() > 60, "{} instructions", s.len());
        for (arch, scmp) in [
            (Arch::ScmpArchAarch64, ScmpArch::Aarch64),
            (Arch::ScmpArchPpc64le, ScmpArch::Ppc64Le),
            (Arch::ScmpArchRiscv64, ScmpArch::Riscv64),
            (Arch::ScmpArchMips64, ScmpArch::Mips64),
        ] {
            let max = ["read", "write", "openat", "close"]
                .iter()
                .map(|n| nr(n, scmp))
                .max()
                .unwrap();
            assert_eq!(run(&s, arch as u32, max), Verdict::Filter, "{arch:?}");
            assert_eq!(run(&s, arch as u32, max + 1), Verdict::Enosys, "{arch:?}");
        }
    }
}
