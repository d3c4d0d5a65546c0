//! `wg showconf` (upstream `src/showconf.c`): the device as a configuration file for
//! `wg setconf`. The printing itself is `wg_config::showconf`, shared with the tests.

use wg_ipc::Ipc;

use crate::output;
use crate::Invocation;

/// Entry point for `showconf`.
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    if inv.args.len() != 2 {
        return output::usage_error(inv.prog, b"showconf <interface>");
    }
    match Ipc::new().get(&inv.args[1]) {
        Ok(mut device) => {
            wg_ipc::resolve::name_endpoint_scopes(&mut device);
            output::stdout(wg_config::showconf(&device).as_bytes())
        }
        Err(e) => {
            output::stderr(format!("Unable to access interface: {e}\n").as_bytes());
            1
        }
    }
}
