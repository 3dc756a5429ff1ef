complete -c hub-tail -l topic -d 'Topic of every event (default: log:<file stem>, log:stdin for -)' -r
complete -c hub-tail -l type -d 'Type of the line events' -r
complete -c hub-tail -l last -d 'For a file without a saved position, start N lines before its end (default: at its end, new lines only)' -r
complete -c hub-tail -l poll-interval -d 'How often to check the files when polling' -r
complete -c hub-tail -l rotate-wait -d 'After a rename rotation, keep reading the old file (lines its writer still appends before reopening its log) for this long; 0: read it to its end once' -r
complete -c hub-tail -l state -d 'Where positions are kept (default: one file per set of inputs under $XDG_STATE_HOME/hub/tail/, else ~/.local/state/hub/tail/)' -r -F
complete -c hub-tail -l max-line -d 'Longest line, in bytes of JSON-encoded text, before it is split into pieces' -r
complete -c hub-tail -l source -d 'The events\' source (default: the host name)' -r
complete -c hub-tail -l url -d 'Hub address: ws://HOST:PORT, ws://HOST:PORT/ws or http://HOST:PORT (/ws is added when missing). Several hubs of one cluster, comma-separated (ws://a:7357,ws://b:7357): the first that answers is used; a failed attempt moves to the next at once, a whole failed round waits the retry delay, a dropped connection resumes on the next hub' -r
complete -c hub-tail -l token -d 'Token for a hub started with --token, sent as `Authorization: Bearer`. Prefer HUB_TOKEN or --token-file: a --token is visible in `ps`' -r
complete -c hub-tail -l token-file -d 'Read the token from FILE (first line; surrounding whitespace is ignored). Takes precedence over --token and HUB_TOKEN' -r -F
complete -c hub-tail -l from-start -d 'For a file without a saved position, start at its first line'
complete -c hub-tail -l poll -d 'Poll instead of using inotify (network file systems, containers); with -v it says so on stderr. hub-tail also falls back to polling by itself when inotify cannot be used, and always says why'
complete -c hub-tail -l json -d 'Parse each line as JSON: an object becomes the event\'s data (with `file` added when it has none); any other line is sent as {"line": ..., "file": ...}'
complete -c hub-tail -s v -l verbose -d 'Say more on stderr (-v: connections and counts, -vv: debug)'
complete -c hub-tail -s q -l quiet -d 'Say nothing on stderr except the error that ends the command'
complete -c hub-tail -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hub-tail -s V -l version -d 'Print version'
