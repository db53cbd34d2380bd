#!/bin/sh
# Render ops/redis/users.acl (a commented template) into a file redis-server --aclfile loads.
#
#   RTP_REDIS_PASSWORD=... RTP_REDIS_ADMIN_PASSWORD=... render-acl.sh TEMPLATE OUTPUT
#
# POSIX sh, awk and sha256sum only: it runs in the redis image before redis-server starts
# (docker-compose.yml) and in the integration test on the host.
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: render-acl.sh TEMPLATE OUTPUT" >&2
    exit 2
fi
template=$1
output=$2

need() {
    # $1: variable name, $2: its value. An empty password would be "nopass" in effect.
    if [ -z "$2" ]; then
        echo "render-acl: $1 is empty; set it (see docker-compose.yml)" >&2
        exit 1
    fi
}
worker_password=${RTP_REDIS_PASSWORD:-}
admin_password=${RTP_REDIS_ADMIN_PASSWORD:-}
need RTP_REDIS_PASSWORD "$worker_password"
need RTP_REDIS_ADMIN_PASSWORD "$admin_password"

# The worker's password sits unescaped inside RTP_REDIS_URL (redis://worker:PASSWORD@host), so
# anything beyond URL-safe characters would break or change the URL.
case $worker_password in
    *[!A-Za-z0-9._~-]*)
        echo "render-acl: RTP_REDIS_PASSWORD may only use A-Z a-z 0-9 . _ ~ - (it goes into a URL)" >&2
        exit 1
        ;;
esac
for default in change-me change-me-admin; do
    if [ "$worker_password" = "$default" ] || [ "$admin_password" = "$default" ]; then
        echo "render-acl: WARNING: a Redis password is still the default '$default'; set" \
            "RTP_REDIS_PASSWORD and RTP_REDIS_ADMIN_PASSWORD (e.g. in .env)" >&2
    fi
done

sha256() {
    printf '%s' "$1" | sha256sum | cut -d' ' -f1
}
worker_hash=$(sha256 "$worker_password")
admin_hash=$(sha256 "$admin_password")

# Written next to the target and renamed: redis-server never sees half a file.
umask 022
awk -v worker="#$worker_hash" -v admin="#$admin_hash" '
    function emit() {
        if (line == "") return
        gsub(/@WORKER_PASSWORD@/, worker, line)
        gsub(/@ADMIN_PASSWORD@/, admin, line)
        print line
    }
    /^[ \t]*(#.*)?$/ { next }                                  # comments, blank lines
    /^[ \t]/ { sub(/^[ \t]+/, ""); line = line " " $0; next }  # continuation of a user
    { emit(); line = $0 }
    END { emit() }
' "$template" >"$output.tmp"

if grep -q '@[A-Z_]*@' "$output.tmp"; then
    echo "render-acl: unknown placeholder left in $output.tmp" >&2
    exit 1
fi
mv "$output.tmp" "$output"
