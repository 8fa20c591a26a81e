#!/bin/sh
# Write .env for the compose stack from .env.example, with a new random value for every secret
# the example leaves empty. Refuses to overwrite an existing .env.
#
#   sh deploy/compose/make-env.sh [EXAMPLE [TARGET]]    (default: .env.example .env)
set -eu
example=${1:-.env.example}
target=${2:-.env}
if [ -e "$target" ]; then
    echo "make-env: $target exists; not overwriting it" >&2
    exit 1
fi
umask 077
tmp="$target.tmp.$$"
trap 'rm -f "$tmp"' EXIT
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
        [A-Za-z_]*=)
            printf '%s%s\n' "$line" "$(openssl rand -hex 32)" ;;
        *)
            printf '%s\n' "$line" ;;
    esac
done <"$example" >"$tmp"
mv "$tmp" "$target"
trap - EXIT
echo "make-env: wrote $target (keep it secret; it is not committed)"
