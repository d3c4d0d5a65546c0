//! `wg-tests-deny-ioctl REQUEST ERRNO -- PROGRAM [ARGS…]`: runs PROGRAM with one `ioctl`
//! request refused, as a kernel or a restrictive container runtime that lacks it would.
//!
//! It installs a seccomp filter (classic BPF over `struct seccomp_data`, the kernel's
//! `Documentation/userspace-api/seccomp_filter.rst`) that makes every `ioctl(fd, REQUEST, …)`
//! fail with ERRNO and allows every other system call, then execs PROGRAM, which inherits the
//! filter (as do its threads and children; `PR_SET_NO_NEW_PRIVS` is set first, as the kernel
//! requires of a caller without `CAP_SYS_ADMIN`, and keeps root's capabilities).
//!
//! * REQUEST: `TUNSETIFF`, `TUNSETOFFLOAD`, `TUNSETVNETHDRSZ`, or a number (decimal or `0x`
//!   hex) of at most 32 bits. The kernel takes an ioctl's request as an `unsigned int`, so
//!   the filter compares the low 32 bits of the argument.
//! * ERRNO: `EPERM`, `EINVAL`, `ENOTTY`, `EOPNOTSUPP`, `EACCES`, `ENOSYS`, or a number
//!   from 1 to 4095.
//!
//! Only x86_64 system calls are filtered (the architecture is checked first; a system call
//! of another architecture passes unchanged), and the tool refuses to run elsewhere. Bad
//! arguments print the usage and exit 2; a failure to install the filter or to exec exits 1.

use std::ffi::OsString;
use std::mem::offset_of;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// `AUDIT_ARCH_X86_64` from `<linux/audit.h>`: `EM_X86_64 | __AUDIT_ARCH_64BIT |
/// __AUDIT_ARCH_LE`.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// `ioctl` on x86_64 (`arch/x86/entry/syscalls/syscall_64.tbl`).
const NR_IOCTL_X86_64: u32 = 16;

/// Requests known by name (`<linux/if_tun.h>`: `_IOW('T', 202 / 208 / 216, int)`).
const REQUESTS: [(&str, u32); 3] = [
    ("TUNSETIFF", 0x4004_54ca),
    ("TUNSETOFFLOAD", 0x4004_54d0),
    ("TUNSETVNETHDRSZ", 0x4004_54d8),
];

/// Errnos known by name.
const ERRNOS: [(&str, i32); 6] = [
    ("EPERM", libc::EPERM),
    ("EINVAL", libc::EINVAL),
    ("ENOTTY", libc::ENOTTY),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EACCES", libc::EACCES),
    ("ENOSYS", libc::ENOSYS),
];

/// The largest errno the kernel passes back (`MAX_ERRNO`).
const MAX_ERRNO: i32 = 4095;

const USAGE: &str = "Usage: wg-tests-deny-ioctl REQUEST ERRNO -- PROGRAM [ARGS...]\n  \
    REQUEST: TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ or a 32-bit number (decimal or 0x hex)\n  \
    ERRNO: EPERM, EINVAL, ENOTTY, EOPNOTSUPP, EACCES, ENOSYS or a number from 1 to 4095";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    request: u32,
    errno: i32,
    program: OsString,
    args: Vec<OsString>,
}

/// Parses the arguments after argv\[0\]; the error says which one is wrong.
fn parse_args(argv: Vec<OsString>) -> Result<Args, String> {
    let mut it = argv.into_iter();
    let request = it.next().ok_or("missing REQUEST")?;
    let request = request
        .to_str()
        .and_then(parse_request)
        .ok_or_else(|| format!("bad REQUEST {request:?}"))?;
    let errno = it.next().ok_or("missing ERRNO")?;
    let errno = errno
        .to_str()
        .and_then(parse_errno)
        .ok_or_else(|| format!("bad ERRNO {errno:?}"))?;
    match it.next() {
        Some(sep) if sep == "--" => {}
        Some(other) => return Err(format!("expected `--` before PROGRAM, found {other:?}")),
        None => return Err("missing `-- PROGRAM`".to_owned()),
    }
    let program = it.next().ok_or("missing PROGRAM")?;
    Ok(Args {
        request,
        errno,
        program,
        args: it.collect(),
    })
}

fn parse_request(s: &str) -> Option<u32> {
    if let Some(&(_, value)) = REQUESTS.iter().find(|(name, _)| *name == s) {
        return Some(value);
    }
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_errno(s: &str) -> Option<i32> {
    if let Some(&(_, value)) = ERRNOS.iter().find(|(name, _)| *name == s) {
        return Some(value);
    }
    s.parse().ok().filter(|n| (1..=MAX_ERRNO).contains(n))
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The filter program: `ioctl(_, request, …)` on x86_64 returns `-errno`, everything else is
/// allowed.
fn filter(request: u32, errno: i32) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let arch = offset_of!(libc::seccomp_data, arch) as u32;
    let nr = offset_of!(libc::seccomp_data, nr) as u32;
    // The low 32 bits of args[1] (little-endian: its first word).
    let request_lo = (offset_of!(libc::seccomp_data, args) + std::mem::size_of::<u64>()) as u32;
    let errno = errno as u32 & libc::SECCOMP_RET_DATA;
    // Each jump's offsets count the instructions to skip; false branches go to ALLOW, the
    // last instruction.
    vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, arch),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 5),
        stmt(BPF_LD | BPF_W | BPF_ABS, nr),
        jump(BPF_JMP | BPF_JEQ | BPF_K, NR_IOCTL_X86_64, 0, 3),
        stmt(BPF_LD | BPF_W | BPF_ABS, request_lo),
        jump(BPF_JMP | BPF_JEQ | BPF_K, request, 0, 1),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ERRNO | errno),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Installs `program` on the calling thread (and what it execs or starts later).
fn install(program: &[libc::sock_filter]) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with integer arguments only; seccomp reads `prog` and the `program` it
    // points to, both alive for the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags: libc::c_ulong = 0;
        if libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("wg-tests-deny-ioctl: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !cfg!(target_arch = "x86_64") {
        eprintln!("wg-tests-deny-ioctl: only x86_64 system calls are filtered");
        return ExitCode::from(1);
    }
    if let Err(e) = install(&filter(args.request, args.errno)) {
        eprintln!("wg-tests-deny-ioctl: installing the seccomp filter: {e}");
        return ExitCode::from(1);
    }
    let e = Command::new(&args.program).args(&args.args).exec();
    eprintln!("wg-tests-deny-ioctl: exec {:?}: {e}", args.program);
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse_args(os(&["TUNSETOFFLOAD", "EINVAL", "--", "prog", "-f", "wg0"])),
            Ok(Args {
                request: 0x4004_54d0,
                errno: libc::EINVAL,
                program: "prog".into(),
                args: os(&["-f", "wg0"]),
            })
        );
        let numeric = parse_args(os(&["0x400454d8", "95", "--", "prog"])).unwrap();
        assert_eq!((numeric.request, numeric.errno), (0x4004_54d8, 95));
        assert_eq!(
            parse_args(os(&["21505", "1", "--", "p"])).unwrap().request,
            21505
        );
        for (bad, why) in [
            (&[][..], "missing REQUEST"),
            (&["TUNSETFOO", "EINVAL", "--", "p"][..], "bad REQUEST"),
            (&["0x100000000", "EINVAL", "--", "p"], "bad REQUEST"),
            (&["TUNSETIFF"], "missing ERRNO"),
            (&["TUNSETIFF", "0", "--", "p"], "bad ERRNO"),
            (&["TUNSETIFF", "4096", "--", "p"], "bad ERRNO"),
            (&["TUNSETIFF", "EWHAT", "--", "p"], "bad ERRNO"),
            (&["TUNSETIFF", "EPERM"], "missing `-- PROGRAM`"),
            (&["TUNSETIFF", "EPERM", "p"], "expected `--`"),
            (&["TUNSETIFF", "EPERM", "--"], "missing PROGRAM"),
        ] {
            let err = parse_args(os(bad)).unwrap_err();
            assert!(err.starts_with(why), "{bad:?}: {err}");
        }
    }

    /// In a forked child (the filter stays there): on a `/dev/net/tun` descriptor attached to
    /// no device, the kernel answers `TUNSETOFFLOAD` with `EBADFD`; filtered, it is EINVAL,
    /// also with junk in the request's upper 32 bits (which the kernel ignores), while
    /// `TUNGETFEATURES` still succeeds.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn filters_only_the_request() {
        const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
        const TUNGETFEATURES: libc::c_ulong = 0x8004_54cf;
        // Built before fork: the child of a multithreaded process must not allocate.
        let program = filter(TUNSETOFFLOAD as u32, libc::EINVAL);
        // Probe without the filter first.
        // SAFETY: open/ioctl/close on a descriptor this test owns; the ioctl arguments are an
        // integer and a pointer to a live `c_uint`.
        let unfiltered = unsafe {
            let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            if fd < 0 {
                eprintln!("SKIPPED: cannot open /dev/net/tun");
                return;
            }
            let r = libc::ioctl(fd, TUNSETOFFLOAD, 0 as libc::c_ulong);
            let errno = *libc::__errno_location();
            libc::close(fd);
            (r, errno)
        };
        assert_eq!(unfiltered, (-1, libc::EBADFD));
        // SAFETY: fork; the child makes only system calls (no allocation, no locks) and
        // leaves with _exit; the parent waits for it.
        let status = unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork");
            if pid == 0 {
                let code = (|| {
                    if install(&program).is_err() {
                        return 10;
                    }
                    let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                    if fd < 0 {
                        return 11;
                    }
                    if libc::ioctl(fd, TUNSETOFFLOAD, 0 as libc::c_ulong) != -1
                        || *libc::__errno_location() != libc::EINVAL
                    {
                        return 12;
                    }
                    let high = TUNSETOFFLOAD | (0x7 << 32);
                    if libc::ioctl(fd, high, 0 as libc::c_ulong) != -1
                        || *libc::__errno_location() != libc::EINVAL
                    {
                        return 13;
                    }
                    let mut features: libc::c_uint = 0;
                    if libc::ioctl(fd, TUNGETFEATURES, &mut features as *mut libc::c_uint) != 0
                        || features & libc::IFF_TUN as libc::c_uint == 0
                    {
                        return 14;
                    }
                    0
                })();
                libc::_exit(code);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            status
        };
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "10: install failed, 11: open, 12: TUNSETOFFLOAD not refused with EINVAL, \
             13: the same with upper bits set, 14: TUNGETFEATURES refused"
        );
    }
}
