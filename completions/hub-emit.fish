complete -c hub-emit -l data -d 'The data as a JSON value; KEY=VALUE fields are merged into it' -r
complete -c hub-emit -l source -d 'The event\'s source (default: this host\'s name)' -r
complete -c hub-emit -l key -d 'The idempotency key of a single event (default: a random one). A run that repeats a key (a retried cron job) is acknowledged with the original id' -r
complete -c hub-emit -l progress-regex -d 'With --run: turn `NN%` in the output into `progress` events. The first capture group is the percent [default regex: (\\d{1,3}(?:\\.\\d+)?)\\s*%]' -r
complete -c hub-emit -l timeout -d 'How long to keep retrying while the hub is unreachable (500ms, 30s, 2m)' -r
complete -c hub-emit -l url -d 'Hub address: ws://HOST:PORT, ws://HOST:PORT/ws or http://HOST:PORT (/ws is added when missing). Several hubs of one cluster, comma-separated (ws://a:7357,ws://b:7357): the first that answers is used; a failed attempt moves to the next at once, a whole failed round waits the retry delay, a dropped connection resumes on the next hub' -r
complete -c hub-emit -l token -d 'Token for a hub started with --token, sent as `Authorization: Bearer`. Prefer HUB_TOKEN or --token-file: a --token is visible in `ps`' -r
complete -c hub-emit -l token-file -d 'Read the token from FILE (first line; surrounding whitespace is ignored). Takes precedence over --token and HUB_TOKEN' -r -F
complete -c hub-emit -l lines -d 'Publish each stdin line as one event: a JSON object line is the data, any other line becomes {"line": "..."}. Pipelined over one connection'
complete -c hub-emit -l events -d 'Each stdin line is a whole event object with its own topic, type, data'
complete -c hub-emit -l run -d 'Run the command after `--`, publishing task_started, then task_completed or task_failed (exit_code, duration_seconds); exit with the command\'s status'
complete -c hub-emit -l capture -d 'With --run: also publish each output line as a `log` event'
complete -c hub-emit -l print-id -d 'Print the id(s) the hub assigned on stdout, one per line'
complete -c hub-emit -s v -l verbose -d 'Say more on stderr (-v: connections and counts, -vv: debug)'
complete -c hub-emit -s q -l quiet -d 'Say nothing on stderr except the error that ends the command'
complete -c hub-emit -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hub-emit -s V -l version -d 'Print version'
