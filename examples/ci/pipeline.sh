#!/bin/sh
# A CI job in two steps that run at the same time on one machine: the build
# reports its progress and result to the hub, and the deploy step waits for it
# with `hub-sub --wait-task`, which exits 0 when the task completes, 1 when it
# fails (at once if it already ended before the wait started), 124 on timeout.
#
#   HUB_URL=ws://127.0.0.1:7357 examples/ci/pipeline.sh
#
# In a CI system with separate jobs the two halves are separate job steps
# (see github-actions.yml); the topic is what ties them together.
set -eu

export HUB_URL="${HUB_URL:-ws://127.0.0.1:7357}"
run_id="${CI_PIPELINE_ID:-${GITHUB_RUN_ID:-local-$$}}"
topic="ci:build-$run_id"

# Step 1 (background): the build, wrapped. task_started now; task_completed or
# task_failed with exit_code and duration_seconds at the end. (A build tool that
# prints `NN%` can report progress too: add --progress-regex.)
hub-emit "$topic" --run -- cargo build --release &
build=$!

# Step 2: waits for the build; only a completed build is deployed.
if hub-sub --wait-task "$topic" --timeout 30m >/dev/null; then
    echo "build $topic completed: deploying"
    # ./deploy.sh
else
    code=$?
    echo "build $topic did not complete (hub-sub exit $code): not deploying" >&2
    wait "$build" || true
    exit "$code"
fi
wait "$build"
