#!/usr/bin/env bash
# Make the token of a serket-ray cluster once, outside the repository (never committed):
#
#   scripts/cluster_token.sh [PATH]        # default ~/.serket-ray/cluster-token
#
# cluster.yaml and cluster-onprem.yaml ship it to every node through file_mounts
# (as ~/.ray/auth_token, Ray's default token path).  An existing token is kept:
# replacing it would lock out a running cluster.
set -euo pipefail
TOKEN=${1:-$HOME/.serket-ray/cluster-token}
if [[ -s $TOKEN ]]; then
    echo "keeping the existing token $TOKEN"
    exit 0
fi
mkdir -p "$(dirname "$TOKEN")"
(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' > "$TOKEN")
echo "wrote a new token to $TOKEN (mode 600)"
