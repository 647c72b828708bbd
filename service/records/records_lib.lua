-- Records of scored windows (prepended to complete.lua after windows_lib.lua): written in the same script
-- that writes the verdict, so a kept window's lines move to its record before the scored lines are dropped.
-- Keys, all in the window's partition slot (P = 'logllm:{p<k>}:'):
--   rec:<id>            hash: the record (fields in service/records/record_store.py)
--   rec:lines:<id>      list: the window's lines as buffered (content + raw line, service/windows/line_codec.py)
--   rec:idx:<status>    zset scored_at -> id, one per status (anomalous, failed, muted, normal)
--   rec:idx:<status>:<source>   the same per source
--   rec:idx:feedback    zset feedback time -> id (labeled records)
--   rec:sess:<key>      zset window number -> id, the scored windows of one session
--   rec:all             zset scored_at -> 'status\nsource\nsession key\nid': trim order, oldest first
--   rec:explain         zset due time -> id: records whose explanation is still to come (service/records/explainer.py)
local function rec_key(id) return P .. 'rec:' .. id end
local function rec_lines_key(id) return P .. 'rec:lines:' .. id end
local function rec_index(status, source)
  if source then return P .. 'rec:idx:' .. status .. ':' .. source end
  return P .. 'rec:idx:' .. status
end

-- Forget one record and its index entries; member is the rec:all member (the record may have expired already).
local function drop_record(member)
  local status, source, skey, id = string.match(member, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n(.*)$')
  redis.call('ZREM', P .. 'rec:all', member)
  if not id then return end
  redis.call('ZREM', rec_index(status), id)
  redis.call('ZREM', rec_index(status, source), id)
  redis.call('ZREM', P .. 'rec:idx:feedback', id)
  if skey ~= '' then redis.call('ZREM', P .. 'rec:sess:' .. skey, id) end
  redis.call('ZREM', P .. 'rec:explain', id)
  redis.call('DEL', rec_key(id), rec_lines_key(id))
end

-- Oldest first: records past their retention, then as many as it takes to stay within the partition's cap.
local function trim_records(now, ttl, cap)
  local all = P .. 'rec:all'
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', all, '-inf', now - ttl, 'LIMIT', 0, 100)) do
    drop_record(member)
  end
  local over = redis.call('ZCARD', all) - cap
  if over > 0 then
    for _, member in ipairs(redis.call('ZRANGE', all, 0, over - 1)) do drop_record(member) end
  end
end

-- Write the record of window id. v: label, score, threshold, n_lines, model_version, closed_at, scored_at,
-- error (the verdict's fields as complete.lua got them); payload: JSON from record_store.record_payload, or ''.
local function write_record(id, v, payload)
  if payload == nil or payload == '' then return end
  local r = cjson.decode(payload)
  local rk = rec_key(id)
  local label = v[1]
  local old = redis.call('HMGET', rk, 'status', 'source', 'kind', 'key')
  if old[1] then  -- an id seen again (a fixed source's line index restarted): the newer window wins
    local okey = ''
    if old[3] == 'session' then okey = old[4] end
    drop_record(old[1] .. '\n' .. old[2] .. '\n' .. okey .. '\n' .. id)
  end
  redis.call('HSET', rk, 'id', id, 'status', label, 'source', r.source, 'kind', r.kind, 'key', r.key,
    'number', r.number, 'reason', r.reason, 'n_lines', v[4], 'model_version', v[5], 'closed_at', v[6],
    'scored_at', v[7])
  if v[2] ~= '' then redis.call('HSET', rk, 'score', v[2], 'threshold', v[3]) end
  if v[8] ~= '' then redis.call('HSET', rk, 'error', v[8]) end
  if r.messages then redis.call('HSET', rk, 'messages', r.messages) end
  if r.explanation then redis.call('HSET', rk, 'explanation', r.explanation) end
  if r.explain then  -- the explanation follows on the worker's lower-priority path; queued with the record
    redis.call('HSET', rk, 'explanation_status', 'pending')
    redis.call('ZADD', P .. 'rec:explain', v[7], id)
  end
  if r.verdict_reason then redis.call('HSET', rk, 'verdict_reason', r.verdict_reason) end
  if r.novelty then redis.call('HSET', rk, 'novelty', r.novelty) end
  redis.call('EXPIRE', rk, r.ttl)
  local closed = closed_key(id)
  if r.lines_ttl > 0 and redis.call('EXISTS', closed) == 1 then
    local lk = rec_lines_key(id)
    redis.call('DEL', lk)
    if label == 'failed' then  -- complete.lua keeps failed lines under failed:<id> too: copy, do not move
      local n = redis.call('LLEN', closed)
      for first = 0, n - 1, 1000 do
        redis.call('RPUSH', lk, unpack(redis.call('LRANGE', closed, first, first + 999)))
      end
    else
      redis.call('RENAME', closed, lk)
    end
    redis.call('EXPIRE', lk, r.lines_ttl)
    redis.call('HSET', rk, 'lines_kept', '1')
  end
  local scored_at = tonumber(v[7])
  redis.call('ZADD', rec_index(label), scored_at, id)
  redis.call('ZADD', rec_index(label, r.source), scored_at, id)
  local skey = ''
  if r.kind == 'session' then
    skey = r.key
    redis.call('ZADD', P .. 'rec:sess:' .. skey, r.number, id)
    redis.call('EXPIRE', P .. 'rec:sess:' .. skey, r.ttl)
  end
  redis.call('ZADD', P .. 'rec:all', scored_at, label .. '\n' .. r.source .. '\n' .. skey .. '\n' .. id)
  trim_records(scored_at, r.ttl, r.cap)
end
