//! The spellings of linux.seccomp's enumerated values, and what each one maps to.
//!
//! The tables are the single source for name ↔ value conversions in this crate: the
//! `features` lists, the JSON checks in [`crate::profile_from_json`] and the messages of
//! [`crate::compile`] all read them. A unit test checks every name against the serde spelling
//! of the `oci-spec` enums, so the two cannot drift apart.

use kakuri_spec::oci::{Arch, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};
use libseccomp::{ScmpArch, ScmpCompareOp};

/// Every action of runtime-spec 1.3.0, with its name and its `SECCOMP_RET_*` base value.
pub(crate) const ACTIONS: [(LinuxSeccompAction, &str, u32); 9] = [
    (
        LinuxSeccompAction::ScmpActKill,
        "SCMP_ACT_KILL",
        libc::SECCOMP_RET_KILL_THREAD,
    ),
    (
        LinuxSeccompAction::ScmpActKillProcess,
        "SCMP_ACT_KILL_PROCESS",
        libc::SECCOMP_RET_KILL_PROCESS,
    ),
    (
        LinuxSeccompAction::ScmpActKillThread,
        "SCMP_ACT_KILL_THREAD",
        libc::SECCOMP_RET_KILL_THREAD,
    ),
    (
        LinuxSeccompAction::ScmpActTrap,
        "SCMP_ACT_TRAP",
        libc::SECCOMP_RET_TRAP,
    ),
    (
        LinuxSeccompAction::ScmpActErrno,
        "SCMP_ACT_ERRNO",
        libc::SECCOMP_RET_ERRNO,
    ),
    (
        LinuxSeccompAction::ScmpActTrace,
        "SCMP_ACT_TRACE",
        libc::SECCOMP_RET_TRACE,
    ),
    (
        LinuxSeccompAction::ScmpActAllow,
        "SCMP_ACT_ALLOW",
        libc::SECCOMP_RET_ALLOW,
    ),
    (
        LinuxSeccompAction::ScmpActLog,
        "SCMP_ACT_LOG",
        libc::SECCOMP_RET_LOG,
    ),
    (
        LinuxSeccompAction::ScmpActNotify,
        "SCMP_ACT_NOTIFY",
        libc::SECCOMP_RET_USER_NOTIF,
    ),
];

/// Every architecture of runtime-spec 1.3.0, with its name and its libseccomp token.
pub(crate) const ARCHES: [(Arch, &str, ScmpArch); 24] = [
    (Arch::ScmpArchNative, "SCMP_ARCH_NATIVE", ScmpArch::Native),
    (Arch::ScmpArchX86, "SCMP_ARCH_X86", ScmpArch::X86),
    (Arch::ScmpArchX86_64, "SCMP_ARCH_X86_64", ScmpArch::X8664),
    (Arch::ScmpArchX32, "SCMP_ARCH_X32", ScmpArch::X32),
    (Arch::ScmpArchArm, "SCMP_ARCH_ARM", ScmpArch::Arm),
    (
        Arch::ScmpArchAarch64,
        "SCMP_ARCH_AARCH64",
        ScmpArch::Aarch64,
    ),
    (Arch::ScmpArchMips, "SCMP_ARCH_MIPS", ScmpArch::Mips),
    (Arch::ScmpArchMips64, "SCMP_ARCH_MIPS64", ScmpArch::Mips64),
    (
        Arch::ScmpArchMips64n32,
        "SCMP_ARCH_MIPS64N32",
        ScmpArch::Mips64N32,
    ),
    (Arch::ScmpArchMipsel, "SCMP_ARCH_MIPSEL", ScmpArch::Mipsel),
    (
        Arch::ScmpArchMipsel64,
        "SCMP_ARCH_MIPSEL64",
        ScmpArch::Mipsel64,
    ),
    (
        Arch::ScmpArchMipsel64n32,
        "SCMP_ARCH_MIPSEL64N32",
        ScmpArch::Mipsel64N32,
    ),
    (Arch::ScmpArchPpc, "SCMP_ARCH_PPC", ScmpArch::Ppc),
    (Arch::ScmpArchPpc64, "SCMP_ARCH_PPC64", ScmpArch::Ppc64),
    (
        Arch::ScmpArchPpc64le,
        "SCMP_ARCH_PPC64LE",
        ScmpArch::Ppc64Le,
    ),
    (Arch::ScmpArchS390, "SCMP_ARCH_S390", ScmpArch::S390),
    (Arch::ScmpArchS390x, "SCMP_ARCH_S390X", ScmpArch::S390X),
    (Arch::ScmpArchParisc, "SCMP_ARCH_PARISC", ScmpArch::Parisc),
    (
        Arch::ScmpArchParisc64,
        "SCMP_ARCH_PARISC64",
        ScmpArch::Parisc64,
    ),
    (
        Arch::ScmpArchRiscv64,
        "SCMP_ARCH_RISCV64",
        ScmpArch::Riscv64,
    ),
    (
        Arch::ScmpArchLoongarch64,
        "SCMP_ARCH_LOONGARCH64",
        ScmpArch::Loongarch64,
    ),
    (Arch::ScmpArchM68k, "SCMP_ARCH_M68K", ScmpArch::M68k),
    (Arch::ScmpArchSh, "SCMP_ARCH_SH", ScmpArch::Sh),
    (Arch::ScmpArchSheb, "SCMP_ARCH_SHEB", ScmpArch::Sheb),
];

/// Every filter flag of runtime-spec 1.3.0, with its name and its seccomp(2) bit.
pub(crate) const FLAGS: [(LinuxSeccompFilterFlag, &str, libc::c_ulong); 4] = [
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        "SECCOMP_FILTER_FLAG_TSYNC",
        libc::SECCOMP_FILTER_FLAG_TSYNC,
    ),
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        "SECCOMP_FILTER_FLAG_LOG",
        libc::SECCOMP_FILTER_FLAG_LOG,
    ),
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    ),
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
    ),
];

/// Every argument operator of runtime-spec 1.3.0 with its name.
pub(crate) const OPERATORS: [(LinuxSeccompOperator, &str); 7] = [
    (LinuxSeccompOperator::ScmpCmpNe, "SCMP_CMP_NE"),
    (LinuxSeccompOperator::ScmpCmpLt, "SCMP_CMP_LT"),
    (LinuxSeccompOperator::ScmpCmpLe, "SCMP_CMP_LE"),
    (LinuxSeccompOperator::ScmpCmpEq, "SCMP_CMP_EQ"),
    (LinuxSeccompOperator::ScmpCmpGe, "SCMP_CMP_GE"),
    (LinuxSeccompOperator::ScmpCmpGt, "SCMP_CMP_GT"),
    (LinuxSeccompOperator::ScmpCmpMaskedEq, "SCMP_CMP_MASKED_EQ"),
];

pub(crate) fn action_name(action: LinuxSeccompAction) -> &'static str {
    ACTIONS
        .iter()
        .find(|(a, _, _)| *a == action)
        .map_or("SCMP_ACT_?", |(_, name, _)| name)
}

pub(crate) fn action_ret(action: LinuxSeccompAction) -> u32 {
    ACTIONS
        .iter()
        .find(|(a, _, _)| *a == action)
        .map_or(libc::SECCOMP_RET_KILL_THREAD, |(_, _, ret)| *ret)
}

pub(crate) fn arch_entry(arch: Arch) -> (&'static str, ScmpArch) {
    ARCHES
        .iter()
        .find(|(a, _, _)| *a == arch)
        .map_or(("SCMP_ARCH_?", ScmpArch::Native), |(_, name, scmp)| {
            (name, *scmp)
        })
}

pub(crate) fn flag_entry(flag: LinuxSeccompFilterFlag) -> (&'static str, libc::c_ulong) {
    FLAGS
        .iter()
        .find(|(f, _, _)| *f == flag)
        .map_or(("SECCOMP_FILTER_FLAG_?", 0), |(_, name, bit)| (name, *bit))
}

/// The libseccomp comparison for an operator; `value` is the mask for SCMP_CMP_MASKED_EQ.
pub(crate) fn compare_op(op: LinuxSeccompOperator, value: u64) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_name<T: serde::Serialize>(v: T) -> String {
        match serde_json::to_value(v).expect("serialize enum") {
            serde_json::Value::String(s) => s,
            other => panic!("enum serialized as {other}"),
        }
    }

    #[test]
    fn table_names_match_oci_spec_spelling() {
        for (a, name, _) in ACTIONS {
            assert_eq!(serde_name(a), name);
        }
        for (a, name, _) in ARCHES {
            assert_eq!(serde_name(a), name);
        }
        for (f, name, _) in FLAGS {
            assert_eq!(serde_name(f), name);
        }
        for (o, name) in OPERATORS {
            assert_eq!(serde_name(o), name);
        }
    }

    #[test]
    fn tables_have_no_duplicates() {
        let mut names: Vec<&str> = ACTIONS.iter().map(|e| e.1).collect();
        names.extend(ARCHES.iter().map(|e| e.1));
        names.extend(FLAGS.iter().map(|e| e.1));
        names.extend(OPERATORS.iter().map(|e| e.1));
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
