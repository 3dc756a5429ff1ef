complete -c hub-sub -s w -l where -d 'Only events where FIELD=VALUE or FIELD!=VALUE (dotted path, e.g. data.status=failed); repeat to AND them' -r
complete -c hub-sub -s t -l type -d 'Only events of this type; repeat to OR them' -r
complete -c hub-sub -l since -d 'Start after event ID (replay from the log, then live)' -r
complete -c hub-sub -l last -d 'Start with the last N matching events, then live' -r
complete -c hub-sub -s n -l count -d 'Exit 0 after printing N events' -r
complete -c hub-sub -l until -d 'Exit 0 after printing the first event where F=V (or F!=V)' -r
complete -c hub-sub -l wait-task -d 'Wait for task TOPIC to end: exit 0 when it completes, 1 when it fails (at once if it already ended). Prints the task\'s events' -r
complete -c hub-sub -l timeout -d 'Exit 124 after DUR (e.g. 30s, 10m)' -r
complete -c hub-sub -l connect-timeout -d 'Exit 3 when the first connection cannot be made within DUR' -r
complete -c hub-sub -l durable -d 'Keep a cursor named NAME in the hub: the next run with the same NAME starts after the last event this run printed. A new NAME starts live unless --since/--last/--all says otherwise' -r
complete -c hub-sub -l format -d 'What to print per event' -r -f -a "json\t'The whole event as compact JSON, one per line (for jq)'
data\t'Only the event\'s `data`, compact JSON, one per line'
text\t'`TS TOPIC TYPE` then data.message, data.line or the compact data'"
complete -c hub-sub -l ready-file -d 'Create PATH once the hub has confirmed the subscription' -r -F
complete -c hub-sub -l url -d 'Hub address: ws://HOST:PORT, ws://HOST:PORT/ws or http://HOST:PORT (/ws is added when missing). Several hubs of one cluster, comma-separated (ws://a:7357,ws://b:7357): the first that answers is used; a failed attempt moves to the next at once, a whole failed round waits the retry delay, a dropped connection resumes on the next hub' -r
complete -c hub-sub -l token -d 'Token for a hub started with --token, sent as `Authorization: Bearer`. Prefer HUB_TOKEN or --token-file: a --token is visible in `ps`' -r
complete -c hub-sub -l token-file -d 'Read the token from FILE (first line; surrounding whitespace is ignored). Takes precedence over --token and HUB_TOKEN' -r -F
complete -c hub-sub -l all -d 'Start with everything the hub retains (= --since 0)'
complete -c hub-sub -l drain -d 'Exit 0 once caught up with the log (after the replay)'
complete -c hub-sub -l no-reconnect -d 'Exit 3 at once when the hub cannot be reached or the connection drops, instead of reconnecting'
complete -c hub-sub -l progress -d 'Draw a live progress bar per task on stderr instead of printing events (plain lines when stderr is not a terminal)'
complete -c hub-sub -s v -l verbose -d 'Say more on stderr (-v: connections and counts, -vv: debug)'
complete -c hub-sub -s q -l quiet -d 'Say nothing on stderr except the error that ends the command'
complete -c hub-sub -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hub-sub -s V -l version -d 'Print version'
