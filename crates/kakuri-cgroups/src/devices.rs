//! Device rules (linux.resources.devices) with runc's semantics: the rules are replayed in order on top of
//! "deny everything"; a rule of type "a" resets the state to allow-all or deny-all; other rules add or remove
//! exceptions. Removing part of a wildcard exception is refused, as runc refuses it (cgroup v1 would silently
//! ignore it). The result is written to the v1 devices controller or compiled into a cgroup v2 eBPF program.

use std::collections::BTreeMap;
use std::path::Path;

use kakuri_spec::oci::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::CgroupError;
use crate::fsutil;

/// Access bits, numbered as the kernel's BPF_DEVCG_ACC_* values.
pub(crate) const ACC_MKNOD: u8 = 1;
pub(crate) const ACC_READ: u8 = 2;
pub(crate) const ACC_WRITE: u8 = 4;
pub(crate) const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Device type of an exception (BPF_DEVCG_DEV_* numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum DevType {
    Block = 1,
    Char = 2,
}

impl DevType {
    fn letter(self) -> char {
        match self {
            DevType::Block => 'b',
            DevType::Char => 'c',
        }
    }
}

/// Which devices an exception covers; `None` = any major/minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DevMatch {
    pub typ: DevType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

/// The device state the rules produce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Emulator {
    /// true: everything is allowed except the exceptions; false: nothing is, except the exceptions.
    pub default_allow: bool,
    /// Exceptions to the default, with their access bits.
    pub exceptions: BTreeMap<DevMatch, u8>,
}

fn access_string(bits: u8) -> String {
    let mut s = String::with_capacity(3);
    if bits & ACC_READ != 0 {
        s.push('r');
    }
    if bits & ACC_WRITE != 0 {
        s.push('w');
    }
    if bits & ACC_MKNOD != 0 {
        s.push('m');
    }
    s
}

fn number(v: Option<i64>, what: &str, field: &str) -> Result<Option<u32>, CgroupError> {
    match v {
        None | Some(-1) => Ok(None),
        Some(n) if (0..=u32::MAX as i64).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(CgroupError::invalid(
            what,
            format!("invalid {field} number {n}"),
        )),
    }
}

impl Emulator {
    /// Replay `rules` on top of deny-all.
    pub(crate) fn from_rules(rules: &[LinuxDeviceCgroup]) -> Result<Emulator, CgroupError> {
        let mut e = Emulator::default();
        for (i, r) in rules.iter().enumerate() {
            e.apply(i, r)?;
        }
        Ok(e)
    }

    fn apply(&mut self, idx: usize, r: &LinuxDeviceCgroup) -> Result<(), CgroupError> {
        let what = format!("linux.resources.devices[{idx}]");
        let access = r.access().as_deref().unwrap_or("");
        if access.is_empty() {
            // runc refuses these too (an empty access would silently mean "nothing").
            return Err(CgroupError::invalid(
                what,
                "the access field cannot be empty",
            ));
        }
        let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => {
                // "a" switches the whole state, whatever major/minor/access say (as the kernel does).
                self.default_allow = r.allow();
                self.exceptions.clear();
                return Ok(());
            }
            LinuxDeviceType::B => DevType::Block,
            LinuxDeviceType::C | LinuxDeviceType::U => DevType::Char,
            LinuxDeviceType::P => {
                return Err(CgroupError::invalid(
                    what,
                    "type \"p\" (fifo) cannot be controlled by the device cgroup",
                ))
            }
        };
        // runc reads the access as a set of r, w and m and ignores any other letter ("rwa" is
        // "rw"; repeats do not matter). One naming none of them would be an empty rule: refused.
        let mut bits = 0u8;
        for c in access.chars() {
            match c {
                'r' => bits |= ACC_READ,
                'w' => bits |= ACC_WRITE,
                'm' => bits |= ACC_MKNOD,
                other => log::warn!("{what}.access: {other:?} ignored (only r, w and m count)"),
            }
        }
        if bits == 0 {
            return Err(CgroupError::invalid(
                what,
                format!("access {access:?} names none of r, w, m"),
            ));
        }
        let m = DevMatch {
            typ,
            major: number(r.major(), &what, "major")?,
            minor: number(r.minor(), &what, "minor")?,
        };
        if r.allow() == self.default_allow {
            self.remove(&what, m, bits)
        } else {
            *self.exceptions.entry(m).or_insert(0) |= bits;
            Ok(())
        }
    }

    /// Take `bits` away from the exception for exactly `m`.
    fn remove(&mut self, what: &str, m: DevMatch, bits: u8) -> Result<(), CgroupError> {
        let partials = [
            DevMatch { major: None, ..m },
            DevMatch { minor: None, ..m },
            DevMatch {
                major: None,
                minor: None,
                ..m
            },
        ];
        for p in partials {
            if p == m {
                continue;
            }
            if let Some(pb) = self.exceptions.get(&p) {
                if pb & bits != 0 {
                    return Err(CgroupError::invalid(
                        what,
                        format!(
                            "cannot punch a hole in the wildcard rule \"{}\" (the device cgroup cannot express it)",
                            rule_text(&p, *pb)
                        ),
                    ));
                }
            }
        }
        if let Some(cur) = self.exceptions.get_mut(&m) {
            *cur &= !bits;
            if *cur == 0 {
                self.exceptions.remove(&m);
            }
        }
        Ok(())
    }
}

/// "c 1:3 rwm" as written to devices.allow / devices.deny.
pub(crate) fn rule_text(m: &DevMatch, bits: u8) -> String {
    let n = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_else(|| "*".into());
    format!(
        "{} {}:{} {}",
        m.typ.letter(),
        n(m.major),
        n(m.minor),
        access_string(bits)
    )
}

/// cgroup v1: set the default, then write every exception.
pub(crate) fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    // The kernel lists exceptions (devices.list) in the order they were added, so they are
    // written in the order their rules are listed, not in the emulator's sorted order.
    let mut emu = Emulator::default();
    let mut order: Vec<DevMatch> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        emu.apply(i, r)?;
        order.retain(|m| emu.exceptions.contains_key(m));
        for m in emu.exceptions.keys() {
            if !order.contains(m) {
                order.push(*m);
            }
        }
    }
    let what = "linux.resources.devices";
    let (default_file, exception_file) = if emu.default_allow {
        ("devices.allow", "devices.deny")
    } else {
        ("devices.deny", "devices.allow")
    };
    fsutil::write(dir, default_file, "a", what)?;
    for m in &order {
        fsutil::write(dir, exception_file, &rule_text(m, emu.exceptions[m]), what)?;
    }
    Ok(())
}

/// One eBPF instruction (struct bpf_insn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes used by the device program.
pub(crate) const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
pub(crate) const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
pub(crate) const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
pub(crate) const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
pub(crate) const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
pub(crate) const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
pub(crate) const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
pub(crate) const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (dst & 0xf) | (src << 4),
        off,
        imm,
    }
}

/// A BPF_PROG_TYPE_CGROUP_DEVICE program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Program {
    pub insns: Vec<Insn>,
}

impl Program {
    /// Compile the device state. Context (struct bpf_cgroup_dev_ctx): u32 access_type (access << 16 | type),
    /// u32 major, u32 minor. Registers: r2 = type, r3 = requested access, r4 = major, r5 = minor.
    /// Each exception is a block that falls through to the next one when it does not match and returns the
    /// exception's verdict when it does; the end returns the default verdict.
    pub(crate) fn generate(emu: &Emulator) -> Program {
        let mut v = vec![
            insn(LDX_MEM_W, 2, 1, 0, 0),
            insn(ALU32_AND_K, 2, 0, 0, 0xffff),
            insn(LDX_MEM_W, 3, 1, 0, 0),
            insn(ALU32_RSH_K, 3, 0, 0, 16),
            insn(LDX_MEM_W, 4, 1, 4, 0),
            insn(LDX_MEM_W, 5, 1, 8, 0),
        ];
        let verdict = if emu.default_allow { 0 } else { 1 };
        for (m, bits) in &emu.exceptions {
            // The block: its conditions (each jumps to the block's end when it fails), r0 = verdict, exit.
            let mut block: Vec<(Insn, bool)> = Vec::new(); // (insn, is_jump_to_block_end)
            block.push((insn(JNE_K, 2, 0, 0, m.typ as i32), true));
            if *bits != ACC_ALL {
                // Requested access must be a subset of the exception's bits.
                block.push((insn(MOV64_X, 1, 3, 0, 0), false));
                block.push((insn(ALU32_AND_K, 1, 0, 0, *bits as i32), false));
                block.push((insn(JNE_X, 1, 3, 0, 0), true));
            }
            if let Some(major) = m.major {
                block.push((insn(JNE_K, 4, 0, 0, major as i32), true));
            }
            if let Some(minor) = m.minor {
                block.push((insn(JNE_K, 5, 0, 0, minor as i32), true));
            }
            block.push((insn(MOV64_K, 0, 0, 0, verdict), false));
            block.push((insn(EXIT, 0, 0, 0, 0), false));
            let len = block.len();
            for (i, (mut ins, jump)) in block.into_iter().enumerate() {
                if jump {
                    ins.off = (len - i - 1) as i16;
                }
                v.push(ins);
            }
        }
        v.push(insn(
            MOV64_K,
            0,
            0,
            0,
            if emu.default_allow { 1 } else { 0 },
        ));
        v.push(insn(EXIT, 0, 0, 0, 0));
        Program { insns: v }
    }

    /// Run the program on a device access (used by the tests to check the generated code; mirrors the
    /// kernel's semantics for the opcodes generated above).
    #[cfg(test)]
    pub(crate) fn run(&self, typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let mut r = [0u64; 11];
        let ctx = [(access << 16) | typ, major, minor];
        let mut pc = 0usize;
        loop {
            let i = self.insns[pc];
            let dst = (i.regs & 0xf) as usize;
            let src = (i.regs >> 4) as usize;
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = ctx[(i.off / 4) as usize] as u64;
                }
                ALU32_AND_K => r[dst] = ((r[dst] as u32) & (i.imm as u32)) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as i64 as u64,
                JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += i.off as usize
                    }
                }
                JNE_X => {
                    if r[dst] != r[src] {
                        pc += i.off as usize
                    }
                }
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }
}
