-- Count one scoring batch's templates per source, remember an example line and the windows that held each,
-- mark the ones learned, and trim each source to its cap. ARGV: prefix, JSON {"cap", "recent", "sources":
-- {source: [{"id", "t" (template), "n" (occurrences), "ex" (example line), "vocab", "learn" ('' or how),
-- "w" (window ids)}]}}. n = 0 only marks (a learn). Returns {source, number of templates new to it, ...}.
local req = cjson.decode(ARGV[2])
local cap, recent = tonumber(req.cap), tonumber(req.recent)
local out = {}
for source, templates in pairs(req.sources) do
  register_source(source)
  local base = source_base(source)
  local new = 0
  for _, t in ipairs(templates) do
    local key = base .. 't:' .. t.id
    if redis.call('EXISTS', key) == 0 then
      local member = source .. ':' .. t.id
      redis.call('HSET', key, 'id', t.id, 'source', source, 'template', t.t, 'count', 0, 'first_seen', NOW_TEXT,
        'example', t.ex, 'vocab', t.vocab)
      redis.call('ZADD', base .. 'rank', 0, t.id)
      redis.call('ZADD', base .. 'seen', NOW, member)
      redis.call('ZADD', P .. 'pat:all', NOW, member)
      new = new + 1
    end
    if t.n > 0 then
      redis.call('HSET', key, 'last_seen', NOW_TEXT)
      redis.call('ZADD', base .. 'rank', redis.call('HINCRBY', key, 'count', t.n), t.id)
    end
    if t.learn ~= '' and redis.call('HEXISTS', key, 'learned') == 0 then
      redis.call('HSET', key, 'learned', t.learn, 'learned_at', NOW_TEXT)
    end
    if #t.w > 0 then
      redis.call('LPUSH', base .. 'win:' .. t.id, unpack(t.w))
      redis.call('LTRIM', base .. 'win:' .. t.id, 0, recent - 1)
    end
  end
  trim(source, cap)
  out[#out + 1] = source
  out[#out + 1] = new
end
return out
