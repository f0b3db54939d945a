-- The moving window of lmi.rate_limiter.redis: one atomic script per operation (see redis.py).
local entries, meta = KEYS[1], KEYS[2]
local op, cap, period = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local BATCH = 128

-- An entry is "<at>:<weight>:<id>", with a negative id while its caller has not been released yet.
local function parse(entry)
  local ts, w, id = string.match(entry, '^(%d+):(%d+):(-?%d+)$')
  return tonumber(ts), tonumber(w), tonumber(id)
end

local function fmt(ts, w, id)
  return string.format('%d:%d:%d', ts, w, id)
end

-- Drop the entries that left the window; returns the sum of those that remain.
local function trim()
  local sum = tonumber(redis.call('HGET', meta, 'sum') or '0')
  local horizon = now - period
  local head = redis.call('LINDEX', entries, 0)
  if not head then return 0 end
  if parse(head) > horizon then return sum end
  while true do
    local batch = redis.call('LRANGE', entries, 0, BATCH - 1)
    local expired = 0
    for i = 1, #batch do
      local ts, w = parse(batch[i])
      if ts > horizon then break end
      sum = sum - w
      expired = i
    end
    if expired == 0 then break end
    redis.call('LTRIM', entries, expired, -1)
    if expired < #batch then break end
  end
  if redis.call('LLEN', entries) == 0 then sum = 0 end
  redis.call('HSET', meta, 'sum', sum)  -- kept in step with the list whoever trims it
  return sum
end

-- Nil when the window ending at `finish` holds at most `room` units of the entries no newer than
-- `finish` (entry `skip` aside); else the time at which the entry that blocks it leaves the window.
local function blocked_until(finish, room, skip)
  local horizon, counted, last = finish - period, 0, -1
  while true do
    local batch = redis.call('LRANGE', entries, last - BATCH + 1, last)
    for i = #batch, 1, -1 do
      local ts, w, id = parse(batch[i])
      if ts <= finish and math.abs(id) ~= skip then
        if ts <= horizon then return nil end
        if counted + w > room then return ts + period end
        counted = counted + w
      end
    end
    if #batch < BATCH then return nil end
    last = last - BATCH
  end
end

-- The entry `id` stamped `at`: its index from the end, its weight, its text and its stored id (nil when
-- it is gone). Matched on the text's end (cheap), then checked whole; stops at entries older than `at`.
local function find(id, at)
  local last, index = -1, 0
  local committed, pending = ':' .. id, ':-' .. id
  while true do
    local batch = redis.call('LRANGE', entries, last - BATCH + 1, last)
    for i = #batch, 1, -1 do
      index = index - 1
      local entry = batch[i]
      local tail = string.sub(entry, -#pending)
      if string.sub(tail, -#committed) == committed or tail == pending then
        local ts, w, eid = parse(entry)
        if math.abs(eid) == id and ts == at then return index, w, entry, eid end
      end
    end
    if #batch < BATCH or parse(batch[1]) < at then return nil end
    last = last - BATCH
  end
end

-- Insert in time order, scanning from the end (where new entries belong).
local function insert(at, w, id)
  local entry, last = fmt(at, w, id), -1
  while true do
    local batch = redis.call('LRANGE', entries, last - BATCH + 1, last)
    for i = #batch, 1, -1 do
      if parse(batch[i]) <= at then
        if last == -1 and i == #batch then
          redis.call('RPUSH', entries, entry)
        else
          redis.call('LINSERT', entries, 'AFTER', batch[i], entry)
        end
        return
      end
    end
    if #batch < BATCH then
      redis.call('LPUSH', entries, entry)
      return
    end
    last = last - BATCH
  end
end

local function expire()
  local last = redis.call('LINDEX', entries, -1)
  local newest = now
  if last then newest = math.max(parse(last), now) end
  local ttl = math.floor((newest + period - now) / 1000) + 1000
  redis.call('PEXPIRE', entries, ttl)
  redis.call('PEXPIRE', meta, ttl)
end

-- The earliest time >= max(now, last entry) at which `weight` fits: first come, first served.
local function place(sum, weight)
  local start = now
  local last = redis.call('LINDEX', entries, -1)
  if last then
    local ts = parse(last)
    if ts >= now then start = ts + 1 end  -- strictly after: wake-ups keep the order of the queue
  end
  if sum + weight <= cap then return start end
  return blocked_until(start, cap - weight, -1) or start
end

local function record(at, weight, sum)
  local id = redis.call('HINCRBY', meta, 'seq', 1)
  local stored = id
  if at > now then stored = -id end  -- a reservation, until its caller commits
  redis.call('RPUSH', entries, fmt(at, weight, stored))
  redis.call('HSET', meta, 'sum', sum + weight, 'cap', cap, 'period', period, 'name', ARGV[4])
  expire()
  return id
end

-- Replies to acquire and commit: {status, wait µs, at µs, id}; status 1: recorded, 0: it would not fit
-- within max_wait (nothing recorded), 2: the caller's deadline had passed (nothing recorded).
if op == 'acquire' then
  local weight, max_wait, deadline = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  if deadline > 0 and now > deadline then return {2, 0, now, 0} end
  -- With a latency the caller's use counts from that much after its release, and whatever counts at
  -- its release counts against it: the window it is checked in grows by as much.
  now, period = now + tonumber(ARGV[8]), period + tonumber(ARGV[8])
  local sum = trim()
  local at = place(sum, weight)
  if at - now > max_wait then return {0, at - now, at, 0} end
  return {1, at - now, at, record(at, weight, sum)}
elseif op == 'commit' then
  local id, at, weight = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  now, period = now + tonumber(ARGV[8]), period + tonumber(ARGV[8])
  -- A caller whose clock runs a little ahead of the server's woke early: it sleeps the rest (its turn
  -- stays reserved) rather than proceed before its time.
  if now < at then return {1, at - now, at, id} end
  local sum = trim()
  local index, w, text = find(id, at)
  if not index then  -- trimmed: its caller woke a whole period late; it queues again
    local again = place(sum, weight)
    return {1, again - now, again, record(again, weight, sum)}
  end
  -- The entries after ours that are not newer than now: they count in the window ending now, first.
  local newer, pivot, pos = {}, nil, index + 1
  while pos <= -1 and not pivot do
    local batch = redis.call('LRANGE', entries, pos, math.min(pos + BATCH - 1, -1))
    for i = 1, #batch do
      local ts, bw = parse(batch[i])
      if ts > now then pivot = batch[i] break end
      newer[#newer + 1] = {ts, bw}
    end
    pos = pos + BATCH
  end
  local new_at = now
  if sum > cap then
    local horizon, counted, room = now - period, 0, cap - w
    local blocked, done = nil, false
    for i = #newer, 1, -1 do
      if newer[i][1] <= horizon then done = true break end
      if counted + newer[i][2] > room then blocked, done = newer[i][1] + period, true break end
      counted = counted + newer[i][2]
    end
    local last = index - 1
    while not done do
      local batch = redis.call('LRANGE', entries, last - BATCH + 1, last)
      for i = #batch, 1, -1 do
        local ts, bw = parse(batch[i])
        if ts <= horizon then done = true break end
        if counted + bw > room then blocked, done = ts + period, true break end
        counted = counted + bw
      end
      if #batch < BATCH then done = true end
      last = last - BATCH
    end
    new_at = blocked or now
  end
  local stored = id
  if new_at > now then stored = -id end
  if new_at == at or (new_at == now and #newer == 0) then  -- its place in the order holds
    redis.call('LSET', entries, index, fmt(new_at, w, stored))
  else
    redis.call('LREM', entries, -1, text)
    if new_at == now and pivot then
      redis.call('LINSERT', entries, 'BEFORE', pivot, fmt(new_at, w, stored))
    elseif new_at == now then
      redis.call('RPUSH', entries, fmt(new_at, w, stored))
    else
      insert(new_at, w, stored)
    end
  end
  expire()
  return {1, new_at - now, new_at, id}
elseif op == 'release' then
  local index, w, text = find(tonumber(ARGV[5]), tonumber(ARGV[6]))
  if not index then return 0 end
  redis.call('LREM', entries, -1, text)
  local sum = tonumber(redis.call('HGET', meta, 'sum') or '0') - w
  redis.call('HSET', meta, 'sum', math.max(sum, 0))
  return w
elseif op == 'settle' then
  local id, at, reserved, used = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  local sum = trim()
  local index, w, _, stored = find(id, at)
  local current = w or reserved
  if used < current then
    if index then
      redis.call('LSET', entries, index, fmt(at, used, stored))
      redis.call('HSET', meta, 'sum', sum - (current - used))
    end
    return used - current
  end
  if used > current then
    local delta = used - current
    insert(now, delta, redis.call('HINCRBY', meta, 'seq', 1))
    redis.call('HSET', meta, 'sum', sum + delta, 'cap', cap, 'period', period, 'name', ARGV[4])
    expire()
  end
  return used - current
elseif op == 'adjust' then
  local delta, newest = tonumber(ARGV[5]), tonumber(ARGV[6])
  local sum = trim()
  if delta > 0 then
    insert(now, delta, redis.call('HINCRBY', meta, 'seq', 1))
    redis.call('HSET', meta, 'sum', sum + delta, 'cap', cap, 'period', period, 'name', ARGV[4])
    expire()
    return delta
  end
  if newest <= 0 or newest > now then newest = now end
  if newest <= now - period then return 0 end
  -- Oldest entries first: they leave the window no later than the charge being corrected.
  local wanted, index, done = -delta, 0, false
  while not done do
    local batch = redis.call('LRANGE', entries, index, index + BATCH - 1)
    for i = 1, #batch do
      local ts, w, id = parse(batch[i])
      if ts > newest or wanted == 0 then done = true break end
      if w > 0 then
        local taken = math.min(w, wanted)
        redis.call('LSET', entries, index + i - 1, fmt(ts, w - taken, id))
        wanted = wanted - taken
      end
    end
    if #batch < BATCH then done = true end
    index = index + BATCH
  end
  local released = -delta - wanted
  if released > 0 then redis.call('HSET', meta, 'sum', sum - released) end
  return -released
elseif op == 'status' then
  -- period 0: measure with the limit last used
  if period <= 0 then period = tonumber(redis.call('HGET', meta, 'period') or '0') end
  local horizon, used, oldest, last = now - period, 0, now, -1
  local done = false
  while not done do
    local batch = redis.call('LRANGE', entries, last - BATCH + 1, last)
    for i = #batch, 1, -1 do
      local ts, w, id = parse(batch[i])
      if ts <= horizon then done = true break end
      if id > 0 then  -- committed (a caller's latency may stamp it a moment ahead); not reservations
        used = used + w
        oldest = math.min(ts, now)
      end
    end
    if #batch < BATCH then done = true end
    last = last - BATCH
  end
  local stored = redis.call('HMGET', meta, 'cap', 'name')
  return {used, oldest, tonumber(stored[1] or '0'), stored[2] or ''}
end
return redis.error_reply('unknown operation ' .. tostring(op))
