-- What the novelty rule needs before it decides: per source, its first-seen time (registered now if new) and
-- which of the given templates it has learned. ARGV: prefix, JSON {source: [template ids]}.
-- Returns JSON {"now": t, "sources": {source: {"first_seen": t, "learned": [ids]}}} (Redis clock).
local asked = cjson.decode(ARGV[2])
local out = {}
for source, ids in pairs(asked) do
  local first = register_source(source)
  local learned = {}
  for _, id in ipairs(ids) do
    if redis.call('HEXISTS', source_base(source) .. 't:' .. id, 'learned') == 1 then learned[#learned + 1] = id end
  end
  out[source] = {first_seen = tonumber(first), learned = learned}
end
return cjson.encode({now = NOW, sources = out})
