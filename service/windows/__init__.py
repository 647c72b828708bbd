"""Windows: the Redis store, its Lua scripts, windowing settings and the embedded Redis server."""
