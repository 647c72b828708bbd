-- One partition's page of templates, newest first seen first (service/patterns/pattern_store.py merges them).
-- KEYS[1]: the index (pat:all or pat:<source>:seen). ARGV: prefix, max time (the cursor's or +inf), cursor
-- time ('' = none), cursor member, min time (since), new_only ('1': neither in the checkpoint's normal
-- vocabulary nor learned), limit, scan budget. Prepended: patterns_lib.lua, service/records/page_lib.lua.
-- Returns {done, last scanned time, last scanned member, {member, time, HGETALL}...}, as records/query.lua.
local new_only = ARGV[6] == '1'
return walk_index(KEYS[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[7]), tonumber(ARGV[8]),
  function(member, t)
    local source, id = string.match(member, '^([^:]*):(.*)$')
    local key = source_base(source) .. 't:' .. id
    local f = redis.call('HMGET', key, 'vocab', 'learned', 'id')
    if not f[3] then return nil end
    if new_only and (f[1] == 'normal' or f[2]) then return false end
    return {member, t, redis.call('HGETALL', key)}
  end)
