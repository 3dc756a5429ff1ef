#!/bin/sh
# Run by cron (see ./crontab): back up /etc and /home, and report the result to
# the hub as task events on topic cron:nightly-backup.
#
# Watch it:
#   hub-sub 'cron:*' --format text                     # live, every cron job
#   hub-sub 'cron:*' --type task_failed                # only failures, as JSON lines
#   curl -s http://127.0.0.1:7357/tasks | jq '.tasks[] | select(.topic == "cron:nightly-backup")'
#   hub-sub 'cron:*' --durable morning-report --all --drain  # a morning cron job: what happened since its last run
set -eu

export HUB_URL="${HUB_URL:-ws://127.0.0.1:7357}"
dest="${BACKUP_DIR:-/var/backups/nightly}"
mkdir -p "$dest"

# --capture also publishes each output line as a `log` event on the same topic,
# so a failure can be read from the hub without the mail. The command's exit
# code becomes this script's exit code (and cron's verdict).
exec hub-emit cron:nightly-backup --run --capture -- \
    tar --create --gzip --file "$dest/$(date +%F).tar.gz" /etc /home
