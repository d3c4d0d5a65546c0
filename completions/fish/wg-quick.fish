# fish completion for wg-quick(8) (wg-rs).
# Installed as /usr/share/fish/vendor_completions.d/wg-quick.fish.

function __wg_quick_configs
    for file in /etc/wireguard/*.conf
        test -f $file; and basename $file .conf
    end
end

function __wg_quick_interfaces
    string split ' ' -- (wg show interfaces 2>/dev/null) | string match -v ''
end

function __wg_quick_at -a count
    test (count (commandline -opc)) -eq $count
end

complete -c wg-quick -f
complete -c wg-quick -n '__wg_quick_at 1' -a up -d 'Create and configure the interface'
complete -c wg-quick -n '__wg_quick_at 1' -a down -d 'Remove the interface and what up added'
complete -c wg-quick -n '__wg_quick_at 1' -a save -d 'Write the running configuration to the file'
complete -c wg-quick -n '__wg_quick_at 1' -a strip -d 'Print the file without the wg-quick keys'
complete -c wg-quick -n '__wg_quick_at 2; and __fish_seen_subcommand_from up strip' -a '(__wg_quick_configs)' -d 'configuration'
complete -c wg-quick -n '__wg_quick_at 2; and __fish_seen_subcommand_from up strip' -F
complete -c wg-quick -n '__wg_quick_at 2; and __fish_seen_subcommand_from down save' -a '(__wg_quick_interfaces)' -d 'interface'
