-- The digests of one dedup set (service/intake/dedup.py): KEYS[1] the set; ARGV[1] 'check' or 'add'; ARGV[2] the
-- hashes, 12 bytes each, in one string (one argument instead of one per entry: the client encodes and Redis
-- parses a single bulk string); ARGV[3] (add) the set's time to live in ms.
-- check: a string of '1' (in the set) or '0' per hash, in order; add: how many hashes were new.
local blob, size = ARGV[2], 12
local n = #blob / size
local CHUNK = 1000 -- members per SADD/SMISMEMBER: unpack() has a stack limit
local out, added = {}, 0
for first = 0, n - 1, CHUNK do
  local members = {}
  for i = first, math.min(first + CHUNK, n) - 1 do
    members[#members + 1] = string.sub(blob, i * size + 1, (i + 1) * size)
  end
  if ARGV[1] == 'add' then
    added = added + redis.call('SADD', KEYS[1], unpack(members))
  else
    for _, hit in ipairs(redis.call('SMISMEMBER', KEYS[1], unpack(members))) do
      out[#out + 1] = hit == 1 and '1' or '0'
    end
  end
end
if ARGV[1] == 'add' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return added
end
return table.concat(out)
