//! Every configuration example of the installed wg(8) and wg-quick(8) man pages parses, and
//! round-trips through the printers; `wg-quick strip` output matches the reference's,
//! recorded in `tests/data/*.strip` by running the installed `wg-quick strip` on each file.

use wg_config::config::{for_setconf, showconf, Parser};
use wg_config::{apply, Device, Endpoint, QuickConfig, QuickParser};

const WG8_EXAMPLE: &str = include_str!("data/wg8-example.conf");

const QUICK_EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "client",
        include_str!("data/wg-quick-client.conf"),
        include_str!("data/wg-quick-client.strip"),
    ),
    (
        "killswitch",
        include_str!("data/wg-quick-killswitch.conf"),
        include_str!("data/wg-quick-killswitch.strip"),
    ),
    (
        "server",
        include_str!("data/wg-quick-server.conf"),
        include_str!("data/wg-quick-server.strip"),
    ),
    (
        "table",
        include_str!("data/wg-quick-table.conf"),
        include_str!("data/wg-quick-table.strip"),
    ),
    (
        "quirks",
        include_str!("data/quirks.conf"),
        include_str!("data/quirks.strip"),
    ),
];

#[test]
fn wg8_example_parses_and_round_trips() {
    let (delta, warnings) = Parser::parse_str(WG8_EXAMPLE).unwrap();
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["Warning: AllowedIP has nonzero host part: 10.192.124.1/24"]
    );
    assert_eq!(delta.listen_port, Some(51820));
    assert_eq!(delta.peers.len(), 3);
    assert_eq!(
        delta.peers[1].endpoint,
        Some("[2607:5300:60:6b0::c05f:543]:2468".parse().unwrap())
    );
    // The hostname stays unresolved in the model.
    assert_eq!(
        delta.peers[2].endpoint,
        Some(Endpoint::Host {
            host: "test.wireguard.com".into(),
            port: 18981
        })
    );

    // setconf onto an empty device gives the state `wg showconf` would print (masked).
    let mut state = Device::default();
    apply(&mut state, &for_setconf(delta));
    let printed = showconf(&state);
    assert_eq!(
        printed,
        "[Interface]\nListenPort = 51820\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\n\
         [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
         AllowedIPs = 10.192.122.3/32, 10.192.124.0/24\nEndpoint = 192.95.5.67:1234\n\n\
         [Peer]\nPublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\n\
         AllowedIPs = 10.192.122.4/32, 192.168.0.0/16\nEndpoint = [2607:5300:60:6b0::c05f:543]:2468\n\n\
         [Peer]\nPublicKey = gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=\n\
         AllowedIPs = 10.10.10.230/32\nEndpoint = test.wireguard.com:18981\n"
    );
    let mut reparsed = Parser::parse_str(&printed).unwrap().0;
    reparsed.normalize();
    assert_eq!(reparsed, state);
}

#[test]
fn wg_quick_examples_strip_like_the_reference_and_round_trip() {
    for (name, text, strip) in QUICK_EXAMPLES {
        let config = QuickParser::parse_str(text).unwrap();
        // `wg-quick strip` is `echo "$WG_CONFIG"`: the kept lines plus one newline.
        assert_eq!(format!("{}\n", config.wg_config), *strip, "{name}");
        let printed = config.to_string();
        assert_eq!(QuickParser::parse_str(&printed).unwrap(), config, "{name}");
        // Printing is stable.
        assert_eq!(
            QuickParser::parse_str(&printed).unwrap().to_string(),
            printed,
            "{name}"
        );
        if *name != "quirks" {
            config
                .wg_device()
                .unwrap_or_else(|err| panic!("{name}: {err}"));
        }
    }
}

#[test]
fn wg_quick_examples_fields() {
    let parse = |text: &str| -> QuickConfig { QuickParser::parse_str(text).unwrap() };
    let client = parse(QUICK_EXAMPLES[0].1);
    assert_eq!(client.addresses[0].to_string(), "10.200.100.8/24");
    assert_eq!(client.dns, ["10.200.100.1"]);
    let (device, _) = client.wg_device().unwrap();
    assert_eq!(
        device.peers[0].endpoint,
        Some(Endpoint::Host {
            host: "demo.wireguard.com".into(),
            port: 51820
        })
    );

    let killswitch = parse(QUICK_EXAMPLES[1].1);
    assert_eq!(killswitch.post_up.len(), 2);
    assert_eq!(
        wg_config::quick::substitute_interface(&killswitch.post_up[1], "wg0"),
        "wg set wg0 private-key <(pass WireGuard/private-keys/wg0)"
    );

    let server = parse(QUICK_EXAMPLES[2].1);
    assert!(server.save_config);
    assert_eq!(server.addresses.len(), 2);

    let table = parse(QUICK_EXAMPLES[3].1);
    assert_eq!(table.table, Some(wg_config::quick::Table::Id(1234)));
    assert_eq!(
        table.pre_down,
        ["ip rule delete ipproto tcp dport 22 table 1234"]
    );
}
