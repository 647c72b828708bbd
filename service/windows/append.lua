-- Append lines to windows of one partition, closing those that fill up.
-- ARGV: prefix, mode ('session'|'fixed'), max_session_lines, window_size, window_step, open_share, queue_share,
-- then one MessagePack array [key, line, key, line, ...] (one argument the client packs in C, not one protocol
-- argument per line in Python; cmsgpack decodes it in a third of cjson's time, and carries the line_codec
-- elements' byte 0xFF as is). The caps are checked here, atomically with the writes, against this
-- partition's share of max_open_windows and max_ready_queue: concurrent requests cannot pass them together.
-- Returns {'ok', ids closed...}, or {'queue_full'} / {'too_many_sessions'} having written nothing.
-- Optional ARGV[9] (a request marker name, service/windows/store.py `_append_once`) and ARGV[10] (its TTL, s): a
-- call whose marker exists was applied by an earlier attempt of the same request and returns that attempt's
-- reply without writing; a call that applies its lines sets the marker, in this script, so a retry after a
-- failure in another partition cannot store them twice.
-- Each window's meta (open, mode) is read once per call and kept in `state`, updated with every open and close
-- this script makes; last-seen times are written once per window at the end (every line of one call has the
-- same time), which leaves the same sorted set as one ZADD per line and a ZREM per close would.
-- Which session windows are open is read from that sorted set, one ZMSCORE per 1,000 keys instead of one HMGET
-- per key: a key is in LASTSEEN exactly while its window is open (every script that opens one ends with its
-- ZADD, every close ZREMs it; every version of these scripts kept that). A key of this id scheme that starts
-- with 'session:' is only ever windowed by session (service/windows/ids.py), so its mode needs no read either;
-- any other key, and any key not in the set, is read from its meta as before.
local mode = ARGV[2] == 'fixed' and 'f' or 's'
local max_lines = tonumber(ARGV[3])
local size = tonumber(ARGV[4])
local step = tonumber(ARGV[5])
local open_share = tonumber(ARGV[6])
local queue_share = tonumber(ARGV[7])
local marker = ARGV[9] and ARGV[9] ~= '' and P .. 'req:' .. ARGV[9] or nil
if marker then
  local applied = redis.call('GET', marker)
  if applied then return cmsgpack.unpack(applied) end
end
local items = cmsgpack.unpack(ARGV[8])

if redis.call('XLEN', STREAM) >= queue_share then return {'queue_full'} end
local state, order, new = {}, {}, 0
for i = 1, #items, 2 do
  local key = items[i]
  if not state[key] then
    state[key] = true
    order[#order + 1] = key
  end
end
for first = 1, #order, 1000 do
  local last = math.min(first + 999, #order)
  local listed = mode == 's' and redis.call('ZMSCORE', LASTSEEN, unpack(order, first, last)) or {}
  for j = first, last do
    local key = order[j]
    if listed[j - first + 1] and string.sub(key, 1, 8) == 'session:' then
      state[key] = {true, 's'}
    else
      local f = redis.call('HMGET', meta_key(key), 'open', 'mode')
      state[key] = {f[1] == '1', f[2]}
      if f[1] ~= '1' then new = new + 1 end
    end
  end
end
if new > 0 and (tonumber(redis.call('GET', OPEN)) or 0) + new > open_share then return {'too_many_sessions'} end

local closed = {'ok'}

-- Buffer the contents of the `left` consecutive items of one key from items[first] (every other item) into a
-- buffer that closes at `limit` lines: up to the limit, one at least (a buffer already past it, after a restart
-- with a smaller size, closes with the next line, as it would alone), one RPUSH per 1,000. Returns how many
-- went in and the buffer's length after them; one line alone (the common case) costs its RPUSH only.
local function push(lines, first, left, limit)
  if left == 1 then return 1, redis.call('RPUSH', lines, items[first]) end
  local n = math.max(1, math.min(left, limit - redis.call('LLEN', lines)))
  local len
  for from = 0, n - 1, 1000 do
    local chunk = {}
    for k = from, math.min(from + 999, n - 1) do chunk[#chunk + 1] = items[first + 2 * k] end
    len = redis.call('RPUSH', lines, unpack(chunk))
  end
  return n, len
end

local function append_session(key, first, count, s)
  local lines = lines_key(key)
  local done = 0
  while done < count do
    if not s[1] then
      mark_open(key, meta_key(key), 's')
      s[1], s[2] = true, 's'
    end
    local n, len = push(lines, first + 2 * done, count - done, max_lines)
    done = done + n
    if len >= max_lines then
      s[1] = false
      closed[#closed + 1] = close_session(key, 'size')
    end
  end
end

local function copy_head(src, dst, count)
  for first = 0, count - 1, 1000 do
    local last = math.min(first + 999, count - 1)
    redis.call('RPUSH', dst, unpack(redis.call('LRANGE', src, first, last)))
  end
end

local function append_fixed(key, first, count, s)
  local meta = meta_key(key)
  local lines = lines_key(key)
  local done = 0
  while done < count do
    if not s[1] then
      local nxt = tonumber(redis.call('HGET', meta, 'next')) or 0
      mark_open(key, meta, 'f')
      s[1], s[2] = true, 'f'
      redis.call('HSET', meta, 'start', nxt, 'next', nxt)
    end
    local n, len = push(lines, first + 2 * done, count - done, size)
    local nxt = redis.call('HINCRBY', meta, 'next', n)
    done = done + n
    if len >= size then
      local start = tonumber(redis.call('HGET', meta, 'start'))
      local id = key .. ':' .. start
      if step >= size then  -- tumbling: the buffer is the window
        redis.call('RENAME', lines, closed_key(id))
        redis.call('HSET', meta, 'start', nxt, 'covered', nxt)
        mark_closed(key, meta)
        s[1] = false
      else  -- sliding: copy the window out, keep the overlap for the next one
        copy_head(lines, closed_key(id), size)
        redis.call('LTRIM', lines, step, -1)
        redis.call('HSET', meta, 'start', start + step, 'covered', start + size)
      end
      enqueue(key, id, 'size', size)
      closed[#closed + 1] = id
    end
  end
end

-- Consecutive items of one key are appended as one run: a window's lines go in with one RPUSH (and, fixed, one
-- HINCRBY) up to where it fills, not one per line; the windows, ids and their order are those of appending
-- the lines one by one (a line fills a window exactly when the run's share for that window ends).
local i = 1
while i <= #items do
  local key = items[i]
  local j = i + 2
  while items[j] == key do j = j + 2 end
  local s = state[key]
  if s[1] and s[2] ~= mode then  -- a key of the old scheme, windowed the other way before: finish it
    local id = close_window(key, 'mode')
    if id then closed[#closed + 1] = id end
    s[1] = false
  end
  if mode == 'f' then append_fixed(key, i + 1, (j - i) / 2, s) else append_session(key, i + 1, (j - i) / 2, s) end
  i = j
end

-- last seen: the windows still open after their last line of this call (a closed one was ZREMed by its close)
local seen = {}
for _, key in ipairs(order) do
  if state[key][1] then
    seen[#seen + 1] = NOW_TEXT
    seen[#seen + 1] = key
    if #seen >= 1000 then
      redis.call('ZADD', LASTSEEN, unpack(seen))
      seen = {}
    end
  end
end
if #seen > 0 then redis.call('ZADD', LASTSEEN, unpack(seen)) end
if marker then redis.call('SET', marker, cmsgpack.pack(closed), 'EX', tonumber(ARGV[10])) end
return closed
