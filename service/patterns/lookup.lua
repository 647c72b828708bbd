-- What the novelty rule needs before it decides: per source, its first-seen time (registered now if new),
-- which of the given templates and which of the given session transitions and counts it has learned.
-- ARGV: prefix, JSON {source: {"ids": [template ids], "paths": ['idA>idB']}}.
-- Returns JSON {"now": t, "sources": {source: {"first_seen": t, "learned": [ids], "paths": [paths]}}} (Redis clock).
local asked = cjson.decode(ARGV[2])
local out = {}
for source, wanted in pairs(asked) do
  local first = register_source(source)
  local base = source_base(source)
  local learned, paths = {}, {}
  for _, id in ipairs(wanted['ids']) do
    if redis.call('HEXISTS', base .. 't:' .. id, 'learned') == 1 then learned[#learned + 1] = id end
  end
  for _, path in ipairs(wanted['paths']) do
    if redis.call('SISMEMBER', base .. 'paths', path) == 1 then paths[#paths + 1] = path end
  end
  out[source] = {first_seen = tonumber(first), learned = learned, paths = paths}
end
return cjson.encode({now = NOW, sources = out})
