#!/bin/sh
# The official redis image is built with protected mode off, so other containers may connect; Debian's is on.
if [ "$1" = redis-server ]; then
    shift
    exec redis-server "$@" --protected-mode no
fi
exec "$@"
