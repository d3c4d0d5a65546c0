# fish completion for wg(8) (wg-rs).
# Installed as /usr/share/fish/vendor_completions.d/wg.fish.

function __wg_interfaces
    string split ' ' -- (wg show interfaces 2>/dev/null) | string match -v ''
end

# The words of the command line before the cursor, without the command name.
function __wg_args
    set -l words (commandline -opc)
    set -e words[1]
    printf '%s\n' $words
end

# True if the command line so far is `wg <command>` plus $argv[2] more words.
function __wg_at -a command count
    set -l args (__wg_args)
    test (count $args) -ge 1; and test "$args[1]" = $command; and test (count $args) -eq (math $count + 1)
end

# The `wg set` option names that may come next (none where a value is expected).
function __wg_set_options
    set -l args (__wg_args)
    set -l n (count $args)
    switch "$args[$n]"
        case listen-port fwmark private-key preshared-key endpoint persistent-keepalive allowed-ips peer
            return
    end
    set -l given
    set -l in_peer 0
    set -l i 3
    while test $i -le $n
        switch $args[$i]
            case peer
                set in_peer 1
                set given
                set i (math $i + 2)
            case remove
                set -a given remove
                set i (math $i + 1)
            case listen-port fwmark private-key preshared-key endpoint persistent-keepalive allowed-ips
                set -a given $args[$i]
                set i (math $i + 2)
            case '*'
                set i (math $i + 1)
        end
    end
    if test $in_peer = 1
        set options remove preshared-key endpoint persistent-keepalive allowed-ips peer
    else
        set options listen-port fwmark private-key peer
    end
    for option in $options
        contains -- $option $given; or echo $option
    end
end

function __wg_set_after -a option
    set -l args (__wg_args)
    test (count $args) -ge 3; and test "$args[1]" = set; and test "$args[-1]" = $option
end

function __wg_set_peers
    set -l args (__wg_args)
    wg show $args[2] peers 2>/dev/null
end

complete -c wg -f
complete -c wg -n '__fish_use_subcommand' -a show -d 'Show interfaces and their peers'
complete -c wg -n '__fish_use_subcommand' -a showconf -d 'Print the configuration of an interface'
complete -c wg -n '__fish_use_subcommand' -a set -d 'Change the configuration of an interface'
complete -c wg -n '__fish_use_subcommand' -a setconf -d 'Replace the configuration with a file'
complete -c wg -n '__fish_use_subcommand' -a addconf -d 'Add a configuration file to the current one'
complete -c wg -n '__fish_use_subcommand' -a syncconf -d 'Make the configuration equal to a file'
complete -c wg -n '__fish_use_subcommand' -a genkey -d 'Generate a private key'
complete -c wg -n '__fish_use_subcommand' -a genpsk -d 'Generate a preshared key'
complete -c wg -n '__fish_use_subcommand' -a pubkey -d 'Derive a public key from a private key'

complete -c wg -n '__wg_at show 0' -a 'all interfaces (__wg_interfaces)'
complete -c wg -n '__wg_at show 1; and not __fish_seen_subcommand_from interfaces' \
    -a 'public-key private-key listen-port fwmark peers preshared-keys endpoints allowed-ips latest-handshakes transfer persistent-keepalive dump paths'
for command in showconf set setconf addconf syncconf
    complete -c wg -n "__wg_at $command 0" -a '(__wg_interfaces)'
end
for command in setconf addconf syncconf
    complete -c wg -n "__wg_at $command 1" -F
end

complete -c wg -n '__fish_seen_subcommand_from set; and not __wg_at set 0' -a '(__wg_set_options)'
complete -c wg -n '__wg_set_after private-key; or __wg_set_after preshared-key' -F
complete -c wg -n '__wg_set_after peer' -a '(__wg_set_peers)'
