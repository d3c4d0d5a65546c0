//! The executor: runs plan steps, printing each one's `[#]` trace first, and the `up`, `down`,
//! `save` and `strip` commands built from the plans (`cmd_up`, `cmd_down`, … of the reference).
//!
//! Links, addresses, routes and rules are changed over rtnetlink (`wg_ipc::rtnl`), the device
//! through the `wg` library in-process; hooks, resolvconf, nft and iptables-restore are run as
//! the reference runs them. A failed step ends the command with the exit status the reference
//! would have (`ip`'s 2, `wg`'s 1, a hook's own), after `up`'s rollback.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};

use wg_config::ntop::Ntop;
use wg_ipc::rtnl::{self, RtnlError, RT_TABLE_MAIN};
use wg_ipc::Ipc;

use crate::config::{unlatin1, ConfigFile};
use crate::linux;
use crate::plan::{self, Op, Step, Undo};
use crate::sys;

/// The userspace implementation used when the kernel has no WireGuard module.
const DEFAULT_USERSPACE: &str = "wg-tunnel";

/// A command ended with this exit status; its message has been printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure(pub(crate) u8);

/// Writes to stderr, ignoring failure (there is nowhere left to report it).
pub(crate) fn stderr(bytes: &[u8]) {
    let _ = io::stderr().lock().write_all(bytes);
}

/// An I/O error's text without Rust's ` (os error N)` suffix, as C's `strerror` gives it.
pub(crate) fn strerror(error: &io::Error) -> String {
    let text = error.to_string();
    let cut = text.rfind(" (os error ").unwrap_or(text.len());
    text[..cut].to_owned()
}

/// `die`: `PROGRAM: message`, exit status 1.
pub(crate) fn die(program: &str, message: &str) -> Failure {
    stderr(&unlatin1(&format!("{program}: {message}\n")));
    Failure(1)
}

/// `[#] text`.
fn trace(text: &str) {
    stderr(&unlatin1(&format!("[#] {text}\n")));
}

/// The exit status bash reports for a finished child.
fn status_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        _ => 1,
    }
}

/// How the command was invoked, as the hooks see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Invocation {
    /// The script's path, `$0` in hooks (our own executable).
    pub(crate) script: OsString,
}

/// Runs one command state: the interface and what this run has done so far.
pub(crate) struct Runner<'a> {
    program: &'a str,
    context: Invocation,
    file: &'a ConfigFile,
    /// What the steps run so far have to be undone by.
    done: BTreeSet<Undo>,
    /// A noted SIGINT/SIGTERM stops the run before its next step (`up`, not its rollback).
    interruptible: bool,
}

impl<'a> Runner<'a> {
    pub(crate) fn new(program: &'a str, context: Invocation, file: &'a ConfigFile) -> Runner<'a> {
        Runner {
            program,
            context,
            file,
            done: BTreeSet::new(),
            interruptible: false,
        }
    }

    fn interface(&self) -> &str {
        &self.file.interface
    }

    /// Runs the steps in order; stops at the first failure that is not tolerated.
    fn run(&mut self, steps: &[Step]) -> Result<(), Failure> {
        for step in steps {
            if let Some(signal) = sys::interrupted().filter(|_| self.interruptible) {
                return Err(Failure(128u8.wrapping_add(signal as u8)));
            }
            match self.run_op(&step.op) {
                Ok(()) => {
                    if let Some(undo) = step.op.undo() {
                        self.done.insert(undo);
                    }
                }
                Err(_) if step.tolerant => {}
                Err(failure) => return Err(failure),
            }
        }
        Ok(())
    }

    /// Prints the trace of `op` and runs it.
    fn run_op(&self, op: &Op) -> Result<(), Failure> {
        let interface = self.interface();
        trace(&op.trace(interface));
        match op {
            Op::AddLink { userspace } => self.add_link(userspace.as_deref()),
            Op::RunHook { hook, phase } => {
                // The reference runs `(eval "$hook")` in a subshell of the script, in its
                // `execute_hooks` function, under `set -e -o pipefail` and extglob: the hook
                // sees `$0` (the script), the function's arguments (the phase's hooks), the
                // script's INTERFACE, CONFIG_FILE, PROGRAM and hook variables and its parsed
                // settings (TABLE, SAVE_CONFIG, MTU and the ADDRESSES, DNS, DNS_SEARCH and
                // hook arrays), and bash's messages name the script. Every value travels as
                // an argument, so no quoting is involved; each array is sent as its length
                // followed by its items.
                const SCRIPT: &str = "INTERFACE=$1 CONFIG_FILE=$2 PROGRAM=$3 hook=$4 \
                                      TABLE=$5 SAVE_CONFIG=$6 MTU=$7; shift 7; \
                                      for _wgq in ADDRESSES DNS DNS_SEARCH PRE_UP POST_UP \
                                      PRE_DOWN POST_DOWN; do \
                                      eval \"$_wgq=(\\\"\\${@:2:\\$1}\\\")\"; \
                                      shift \"$(($1 + 1))\"; done; unset _wgq; \
                                      eval \"$hook\"";
                let config = &self.file.config;
                let table = config.table.as_ref().map(ToString::to_string);
                let mtu = config.mtu.as_ref().map(ToString::to_string);
                let mut command = Command::new("bash");
                command
                    .args(["-e", "-o", "pipefail", "-O", "extglob", "-c", SCRIPT])
                    .arg(&self.context.script)
                    .arg(interface)
                    .arg(&self.file.path)
                    .arg(self.program)
                    .arg(OsString::from_vec(unlatin1(hook)))
                    .arg(table.unwrap_or_default())
                    .arg(if config.save_config { "1" } else { "0" })
                    .arg(mtu.unwrap_or_default());
                let addresses: Vec<String> =
                    config.addresses.iter().map(ToString::to_string).collect();
                for list in [
                    &addresses,
                    &config.dns,
                    &config.dns_search,
                    &config.pre_up,
                    &config.post_up,
                    &config.pre_down,
                    &config.post_down,
                ] {
                    command.arg(list.len().to_string());
                    command.args(list.iter().map(|item| OsString::from_vec(unlatin1(item))));
                }
                command.args(phase.iter().map(|h| OsString::from_vec(unlatin1(h))));
                self.spawn(command, None, "bash")
            }
            Op::AddConf(text) => match wg::addconf_text(OsStr::new(interface), &unlatin1(text)) {
                0 => Ok(()),
                status => Err(Failure(status)),
            },
            Op::SetRelay { relay, public_key } => self.set_relay(relay, public_key),
            Op::AddAddress(address) => {
                let Some(addr) = address.addr() else {
                    // iproute2's words for text it cannot read as a prefix.
                    let family = if address.is_ipv6() { "inet6" } else { "inet" };
                    stderr(
                        format!("Error: {family} prefix is expected rather than \"{address}\".\n")
                            .as_bytes(),
                    );
                    return Err(Failure(1));
                };
                let index = self.index()?;
                ip(rtnl::address_add(index, addr, address.prefix()))
            }
            Op::SetMtuUp(mtu) => {
                let Some(value) = mtu.value() else {
                    // iproute2's words (and exit status) for a value it cannot read.
                    stderr(
                        format!("Error: argument \"{mtu}\" is wrong: Invalid \"mtu\" value\n\n")
                            .as_bytes(),
                    );
                    return Err(Failure(255));
                };
                ip(rtnl::link_set_mtu_up(self.index()?, value))
            }
            Op::SetDns { name, input } => {
                let mut command = Command::new("resolvconf");
                command.args(["-a", name, "-m", "0", "-x"]);
                self.spawn(command, Some(input), "resolvconf")
            }
            Op::AddRoute { prefix, table } => {
                let index = self.index()?;
                let id = match table {
                    None => RT_TABLE_MAIN,
                    Some(table) => match table.id {
                        Some(id) => id,
                        None => {
                            stderr(
                                format!(
                                    "Error: argument \"{}\" is wrong: \"table\" value is invalid\n\n",
                                    table.text
                                )
                                .as_bytes(),
                            );
                            return Err(Failure(255));
                        }
                    },
                };
                ip(rtnl::route_add(prefix.addr, prefix.len, index, id))
            }
            Op::SetFwmark(mark) => {
                let argv: Vec<OsString> = ["wg", "set", interface, "fwmark", &mark.to_string()]
                    .iter()
                    .map(OsString::from)
                    .collect();
                match wg::run(&argv) {
                    0 => Ok(()),
                    status => Err(Failure(status)),
                }
            }
            Op::AddRule { v6, rule } => ip(rtnl::rule_add(*v6, rule)),
            Op::DeleteRule { v6, rule } => ip(rtnl::rule_delete(*v6, rule)),
            Op::SetSrcValidMark => {
                const KEY: &str = "/proc/sys/net/ipv4/conf/all/src_valid_mark";
                fs::write(KEY, "1").map_err(|e| {
                    stderr(
                        format!("sysctl: setting key \"net.ipv4.conf.all.src_valid_mark\": {e}\n")
                            .as_bytes(),
                    );
                    Failure(255)
                })
            }
            Op::Nft(script) => {
                let mut command = Command::new("nft");
                command.args(["-f", "/dev/stdin"]);
                self.spawn(command, Some(script), "nft")
            }
            Op::IptablesRestore { v6, input } => {
                let name = if *v6 {
                    "ip6tables-restore"
                } else {
                    "iptables-restore"
                };
                let mut command = Command::new(name);
                command.arg("-n");
                self.spawn(command, Some(input), name)
            }
            Op::UnsetDns { name } => {
                let mut command = Command::new("resolvconf");
                command.args(["-d", name, "-f"]);
                self.spawn(command, None, "resolvconf")
            }
            Op::DeleteLink => ip(rtnl::link_delete(self.index()?)),
        }
    }

    /// `add_if`: the kernel link, else the userspace implementation.
    /// The `Relay` / `RelayPublicKey` extension keys: the relay resolved as endpoints are,
    /// then sent to the wg-tunnel device over its UAPI socket (wg-tunnel(8) NAT TRAVERSAL).
    fn set_relay(&self, relay: &str, public_key: &str) -> Result<(), Failure> {
        use wg_config::key::Key;
        use wg_ipc::resolve::{resolve_endpoint, retry_message, Retries};
        let interface = self.interface();
        let endpoint: wg_config::Endpoint = relay
            .parse()
            .map_err(|_| die(self.program, &format!("Relay `{relay}' is not HOST:PORT")))?;
        let key = wg_config::PublicKey::from_base64(public_key).map_err(|_| {
            die(
                self.program,
                &format!("RelayPublicKey `{public_key}' is not a public key"),
            )
        })?;
        let retries = Retries::from_env().unwrap_or_default();
        let mut wait = |error: &_, delay| {
            stderr(format!("{}\n", retry_message(error, delay)).as_bytes());
            std::thread::sleep(delay);
        };
        let addr = resolve_endpoint(&endpoint, relay, retries, &mut wait)
            .map_err(|e| die(self.program, &e.to_string()))?
            .socket_addr()
            .ok_or_else(|| die(self.program, &format!("Relay `{relay}' has no address")))?;
        let sockets = wg_ipc::uapi::SocketDir::default();
        if !sockets.has_interface(OsStr::new(interface)) {
            return Err(die(
                self.program,
                "Relay needs the wg-tunnel userspace device (WG_QUICK_USERSPACE_IMPLEMENTATION)",
            ));
        }
        let request = format!("set=1\nrelay={addr}\nrelay_public_key={}\n\n", key.to_hex());
        match sockets.request(OsStr::new(interface), &request) {
            Ok(reply) if reply == "errno=0\n\n" => Ok(()),
            Ok(reply) => {
                let errno = reply
                    .strip_prefix("errno=")
                    .and_then(|r| r.trim().parse::<i32>().ok())
                    .map_or(libc::EPROTO, i32::abs);
                let error = io::Error::from_raw_os_error(errno);
                Err(die(
                    self.program,
                    &format!("cannot set the relay: {}", strerror(&error)),
                ))
            }
            Err(e) => Err(die(
                self.program,
                &format!("cannot set the relay: {}", strerror(&e)),
            )),
        }
    }

    fn add_link(&self, userspace: Option<&str>) -> Result<(), Failure> {
        let interface = self.interface();
        let Err(failure) = ip(rtnl::link_add(interface, "wireguard")) else {
            return Ok(());
        };
        let Some(userspace) = userspace else {
            return Err(failure);
        };
        stderr(b"[!] Missing WireGuard kernel module. Falling back to slow userspace implementation.\n");
        trace(&format!("{userspace} {interface}"));
        let mut command = Command::new(userspace);
        command.arg(interface);
        self.spawn(command, None, userspace)
    }

    /// The interface index, as `ip … dev IF` resolves it.
    fn index(&self) -> Result<u32, Failure> {
        let interface = self.interface();
        match rtnl::link(interface) {
            Ok(Some(link)) => Ok(link.index),
            Ok(None) => {
                stderr(format!("Cannot find device \"{interface}\"\n").as_bytes());
                Err(Failure(1))
            }
            Err(e) => ip::<u32>(Err(e)),
        }
    }

    /// Runs a child to completion, with `input` on its stdin if given.
    fn spawn(&self, mut command: Command, input: Option<&str>, name: &str) -> Result<(), Failure> {
        if input.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                stderr(format!("{}: {name}: command not found\n", self.program).as_bytes());
                return Err(Failure(127));
            }
            Err(e) => {
                stderr(format!("{}: {name}: {}\n", self.program, strerror(&e)).as_bytes());
                return Err(Failure(126));
            }
        };
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A child that exits without reading everything is judged by its status alone.
            let _ = stdin.write_all(&unlatin1(input));
        }
        let status = loop {
            match child.wait() {
                Ok(status) => break status,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Failure(1)),
            }
        };
        match status_code(status) {
            0 => Ok(()),
            code => Err(Failure(code)),
        }
    }

    /// `del_if` with this run's DNS and firewall flags: `up`'s rollback.
    fn del_if(&mut self) -> Result<(), Failure> {
        let facts = linux::teardown_facts(
            self.interface(),
            &self.file.config,
            self.done.contains(&Undo::Dns),
            self.done.contains(&Undo::Firewall),
        );
        let steps = plan::plan_del_if(self.interface(), &self.file.config, &facts);
        self.run(&steps)
    }

    /// `cmd_up`.
    pub(crate) fn up(&mut self) -> Result<(), Failure> {
        let interface = self.interface().to_owned();
        // `ip link show dev IF` printing anything; a failed query prints nothing.
        if let Ok(Some(_)) = rtnl::link(&interface) {
            return Err(die(self.program, &format!("`{interface}' already exists")));
        }
        sys::catch_interrupts();
        self.interruptible = true;
        let result = self.up_steps();
        self.interruptible = false;
        if let Err(failure) = result {
            // The reference's trap: `del_if; exit`, keeping the failed command's status.
            let _ = self.del_if();
            return Err(failure);
        }
        Ok(())
    }

    fn up_steps(&mut self) -> Result<(), Failure> {
        let interface = self.interface().to_owned();
        let config = &self.file.config;
        let name = std::env::var("WG_QUICK_USERSPACE_IMPLEMENTATION")
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| DEFAULT_USERSPACE.to_owned());
        let userspace = (!linux::kernel_module_present() && linux::find_program(&name).is_some())
            .then_some(name);
        self.run(&plan::plan_create(&interface, config, userspace))?;
        let endpoints = if config.mtu.is_none() {
            linux::endpoint_mtus(&interface)
        } else {
            Vec::new()
        };
        self.run(&plan::plan_mtu(
            config,
            &endpoints,
            linux::default_route_mtu,
        ))?;
        let facts = linux::route_facts(&interface, config);
        self.run(&plan::plan_routes(&interface, config, &facts))?;
        if let Some(signal) = sys::interrupted() {
            return Err(Failure(128u8.wrapping_add(signal as u8)));
        }
        Ok(())
    }

    /// Fails unless `wg show interfaces` lists the interface.
    fn check_wireguard(&self) -> Result<(), Failure> {
        let interface = self.interface();
        let listed = Ipc::new()
            .list()
            .unwrap_or_default()
            .iter()
            .any(|name| name == interface.as_bytes());
        if listed {
            Ok(())
        } else {
            Err(die(
                self.program,
                &format!("`{interface}' is not a WireGuard interface"),
            ))
        }
    }

    /// `cmd_down`.
    pub(crate) fn down(&mut self) -> Result<(), Failure> {
        self.check_wireguard()?;
        let interface = self.interface().to_owned();
        let config = &self.file.config;
        self.run(&plan::plan_pre_down(&interface, config))?;
        if config.save_config {
            self.save_config()?;
        }
        let facts = linux::teardown_facts(&interface, &self.file.config, false, false);
        self.run(&plan::plan_down(&interface, &self.file.config, &facts))
    }

    /// `cmd_save`.
    pub(crate) fn save(&mut self) -> Result<(), Failure> {
        self.check_wireguard()?;
        self.save_config()
    }

    /// `save_config`: rewrite the file from the live state, atomically, with umask 077.
    fn save_config(&self) -> Result<(), Failure> {
        let interface = self.interface();
        let config = &self.file.config;
        let link = rtnl::link(interface).ok().flatten();
        let addresses: Vec<String> = link
            .as_ref()
            .and_then(|link| rtnl::addresses(link.index, None).ok())
            .unwrap_or_default()
            .iter()
            .map(|a| format!("{}/{}", Ntop(a.addr), a.prefix_len))
            .collect();
        let name = format!("{}{interface}", linux::resolvconf_prefix());
        let nameservers = linux::saved_nameservers(&name);
        let mtu = link.as_ref().map(|l| l.mtu);
        trace(&format!("wg showconf {interface}"));
        let showconf = match Ipc::new().get(OsStr::new(interface)) {
            Ok(mut device) => {
                wg_ipc::resolve::name_endpoint_scopes(&mut device);
                wg_config::showconf(&device)
            }
            Err(e) => {
                stderr(format!("Unable to access interface: {e}\n").as_bytes());
                return Err(Failure(1));
            }
        };
        let text = plan::saved_config(config, &addresses, &nameservers, mtu, &showconf);
        let mut tmp = self.file.path.clone().into_os_string();
        tmp.push(".tmp");
        let old = sys::umask(0o077);
        let opened = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(&tmp);
        sys::umask(old);
        if let Err(e) = &opened {
            // The reference's `> "$CONFIG_FILE.tmp"` redirection fails first, and bash says so.
            let mut line = format!("{}: ", self.program).into_bytes();
            line.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(tmp.as_os_str()));
            line.extend_from_slice(format!(": {}\n", strerror(e)).as_bytes());
            stderr(&line);
        }
        let written = opened.and_then(|mut file| {
            file.write_all(&unlatin1(&text))?;
            file.sync_all()
        });
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
            return Err(die(self.program, "Could not write configuration file"));
        }
        if fs::rename(&tmp, &self.file.path).is_err() {
            let _ = fs::remove_file(&tmp);
            return Err(die(self.program, "Could not move configuration file"));
        }
        Ok(())
    }

    /// `cmd_strip`: the wg(8) part of the file.
    pub(crate) fn strip(&self) -> Result<(), Failure> {
        let mut text = unlatin1(&self.file.config.wg_config);
        text.push(b'\n');
        let mut stdout = io::stdout().lock();
        match stdout.write_all(&text).and_then(|()| stdout.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            // bash's `echo` says so, under `set -e` the script then exits 1.
            Err(e) => {
                stderr(
                    format!("{}: echo: write error: {}\n", self.program, strerror(&e)).as_bytes(),
                );
                Err(Failure(1))
            }
        }
    }
}

/// An rtnetlink result as `ip` reports it: the message, exit status 2.
fn ip<T>(result: Result<T, RtnlError>) -> Result<T, Failure> {
    result.map_err(|e| {
        stderr(format!("{e}\n").as_bytes());
        Failure(2)
    })
}
