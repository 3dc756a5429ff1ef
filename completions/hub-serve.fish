complete -c hub-serve -l listen -d 'Address to listen on (port 0 picks a free port; the first stderr line names it)' -r
complete -c hub-serve -l data-dir -d 'Where the event log lives [default: $XDG_STATE_HOME/hub, else ~/.local/state/hub]' -r -F
complete -c hub-serve -l fsync -d 'When written events are fsynced: always (before each ack, group commit), batch (at least every 100 ms), never (left to the OS). All three survive a crash of the process; after a power loss, batch may lose the last 100 ms and never what the OS had not written back yet. [default: batch] Not with --nats' -r -f -a "always\t'fsync before every acknowledgement (batched: one fsync per group commit)'
batch\t'fsync written data at least every 100 ms'
never\t'Never fsync; the OS writes back when it likes'"
complete -c hub-serve -l nats -d 'Keep events in a NATS JetStream stream instead of a log of this node\'s own: every hub-serve given the same servers and stream serves the same events under the same ids (URLs comma-separated: nats://HOST:4222,...). Needs nats-server 2.9 or newer with JetStream (-js)' -r
complete -c hub-serve -l nats-stream -d 'The JetStream stream to use with --nats (created by the first node when missing, checked and never changed by the others)' -r
complete -c hub-serve -l nats-replicas -d 'Replicas of the stream (and of the cursor buckets) when this node creates it: 1 to 5; 3 survives the loss of one server' -r
complete -c hub-serve -l retain-events -d 'Retain about this many events: the oldest whole segments are dropped once at least N remain without them' -r
complete -c hub-serve -l retain-bytes -d 'Retain about this much log (e.g. 512MiB, 1GiB): the oldest whole segments are dropped once at least SIZE remains without them' -r
complete -c hub-serve -l retain-age -d 'Drop segments whose newest event is older than this (e.g. 7d, 12h)' -r
complete -c hub-serve -l token -d 'Require this token (Authorization: Bearer T or ?token=T) on every request but /health. Prefer --token-file: a token on the command line shows in ps' -r
complete -c hub-serve -l token-file -d 'Read the token from this file (first line); takes precedence over --token and HUB_TOKEN, as in the client commands' -r -F
complete -c hub-serve -l allow-origin -d 'Let browser pages from this origin connect (e.g. https://dash.example:8443); repeatable; `*` allows any' -r
complete -c hub-serve -l allow-host -d 'Accept this host name in the Host header besides localhost and IP addresses; repeatable' -r
complete -c hub-serve -l max-connections -d 'Most connections at once, HTTP and WebSocket alike, each counted from accept until it closes. Over it, an HTTP request gets 429 and a WebSocket is closed with 4429 (clients back off and retry), then the connection is closed' -r
complete -c hub-serve -l max-subscriptions -d 'Most subscriptions per connection; more get an error frame' -r
complete -c hub-serve -l max-event-bytes -d 'Largest encoded event (e.g. 64KiB, 1MiB)' -r
complete -c hub-serve -l idle-timeout -d 'Close a WebSocket that sent nothing (pongs count) for this long, with 1001' -r
complete -c hub-serve -l memory -d 'Keep events in memory only; nothing is written to disk'
complete -c hub-serve -l check -d 'Read the log in the data dir offline and report it, changing nothing: each segment, every damaged record (file, offset, ids), the totals. Exits 0 when the log is intact, 1 when it is damaged, 2 when the dir is missing or held by a running hub-serve'
complete -c hub-serve -l no-dashboard -d 'Do not serve the browser dashboard at / and /dashboard (they answer 404)'
complete -c hub-serve -s v -l verbose -d 'More log output (repeat for more); RUST_LOG overrides'
complete -c hub-serve -s q -l quiet -d 'Only errors on stderr (the listening line is still printed)'
complete -c hub-serve -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hub-serve -s V -l version -d 'Print version'
