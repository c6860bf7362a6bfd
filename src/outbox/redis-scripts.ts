/**
 * The Redis outbox's Lua scripts. Each runs atomically on the server, so what an instance writes
 * is in its own pending list (PEL) from the moment it exists, and a dead instance's entries move
 * to exactly one live instance. Scripts see RESP2 replies whatever protocol the client speaks.
 *
 * Keys: KEYS[1] the stream, KEYS[2] the hash of live consumers (consumer -> deadline, in ms of the
 * server's clock, past which its entries may be taken over). With Redis Cluster both need the same
 * hash tag: the default stream name `zenovay:outbox:{trackingCode}` has one.
 */
import { createHash } from 'node:crypto';

export interface Script {
  readonly name: string;
  readonly source: string;
  readonly sha: string;
}

function script(name: string, source: string): Script {
  return { name, source, sha: createHash('sha1').update(source).digest('hex') };
}

/** The server's clock in milliseconds: every deadline is on it, never on an instance's clock. */
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * One write cycle. ARGV: group, consumer, maxLength, aliveMs, then the ids to settle (a count,
 * then the ids), then the entries to add (a count, then key, body, headers, acceptedAt each).
 * Settles (XACK + XDEL), adds (XADD MAXLEN ~) and, in the same step, reads what it added into this
 * consumer's PEL through the group (XREADGROUP '>'): no other consumer is ever served an entry
 * that its writer holds. Refreshes the consumer's deadline. A stream that is gone (Redis restarted
 * without persistence) is made again with its group before anything is written. Returns { added ids, XLEN, the count
 * of entries read that this call did not add (written by something else: now in this PEL) }.
 */
export const WRITE = script(
  'write',
  `${NOW}
local stream, alive = KEYS[1], KEYS[2]
local group, me, maxlen = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', stream) == 0 then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
end
redis.call('HSET', alive, me, now + tonumber(ARGV[4]))
local i = 5
local nids = tonumber(ARGV[i])
i = i + 1
if nids > 0 then
  local ids = {}
  for j = 1, nids do
    ids[j] = ARGV[i]
    i = i + 1
  end
  redis.call('XACK', stream, group, unpack(ids))
  redis.call('XDEL', stream, unpack(ids))
end
local nadd = tonumber(ARGV[i])
i = i + 1
local added = {}
local mine = {}
for j = 1, nadd do
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
    'key', ARGV[i], 'body', ARGV[i + 1], 'headers', ARGV[i + 2], 'acceptedAt', ARGV[i + 3])
  added[j] = id
  mine[id] = true
  i = i + 4
end
local foreign = 0
if nadd > 0 then
  local last = added[nadd]
  local done = false
  while not done do
    local reply = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', 1000, 'STREAMS', stream, '>')
    if not reply then break end
    local entries = reply[1][2]
    if #entries == 0 then break end
    for _, entry in ipairs(entries) do
      if not mine[entry[1]] then foreign = foreign + 1 end
      if entry[1] == last then done = true end
    end
  end
end
return { added, redis.call('XLEN', stream), foreign }
`,
);

/**
 * Takes over what dead consumers left. ARGV: group, consumer, aliveMs, claimAfterMs, max.
 * A consumer is dead when its deadline in the hash has passed, or, with no deadline there (a
 * writer that is not this package), when the group has not seen it for claimAfterMs. Up to `max`
 * of their pending entries move to this consumer (XCLAIM); entries trimmed or deleted meanwhile
 * leave the PEL and are counted as lost. Dead consumers with nothing pending are deleted, with
 * their deadlines, as are deadlines of consumers the group no longer has.
 * Returns { claimed entries [id, fields], entries still pending on dead consumers, lost, this
 * consumer's own pending count, XLEN }.
 */
export const CLAIM = script(
  'claim',
  `${NOW}
local stream, alive = KEYS[1], KEYS[2]
local group, me = ARGV[1], ARGV[2]
local claimAfter, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('HSET', alive, me, now + tonumber(ARGV[3]))
local consumers = redis.call('XINFO', 'CONSUMERS', stream, group)
local claimed, waiting, lost, own = {}, 0, 0, 0
local known = {}
for _, c in ipairs(consumers) do
  local name, pending, idle
  for k = 1, #c, 2 do
    if c[k] == 'name' then name = c[k + 1]
    elseif c[k] == 'pending' then pending = c[k + 1]
    elseif c[k] == 'idle' then idle = c[k + 1] end
  end
  known[name] = true
  if name == me then
    own = pending
  else
    local deadline = redis.call('HGET', alive, name)
    local dead
    if deadline then dead = tonumber(deadline) < now else dead = idle >= claimAfter end
    if dead then
      if pending == 0 then
        redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
        redis.call('HDEL', alive, name)
        known[name] = nil
      else
        local take = math.min(pending, budget)
        if take > 0 then
          local ids = {}
          for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', take, name)) do
            ids[#ids + 1] = p[1]
          end
          -- Entries deleted meanwhile: left out (Redis 7) or nil (before), and acknowledged
          -- here so that they leave the PEL either way.
          local present, gone = {}, {}
          for _, entry in ipairs(redis.call('XCLAIM', stream, group, me, 0, unpack(ids))) do
            if entry then
              claimed[#claimed + 1] = entry
              present[entry[1]] = true
            end
          end
          for _, id in ipairs(ids) do
            if not present[id] then gone[#gone + 1] = id end
          end
          if #gone > 0 then redis.call('XACK', stream, group, unpack(gone)) end
          lost = lost + #gone
          budget = budget - #ids
          pending = pending - #ids
        end
        waiting = waiting + pending
      end
    end
  end
end
local fields = redis.call('HGETALL', alive)
for k = 1, #fields, 2 do
  if not known[fields[k]] and tonumber(fields[k + 1]) < now - claimAfter then
    redis.call('HDEL', alive, fields[k])
  end
end
return { claimed, waiting, lost, own, redis.call('XLEN', stream) }
`,
);

/** The entries with these ids (ARGV), each [id, fields] or false when it is gone. */
export const FETCH = script(
  'fetch',
  `
local out = {}
for i, id in ipairs(ARGV) do
  local found = redis.call('XRANGE', KEYS[1], id, id)
  if found[1] then out[i] = found[1] else out[i] = false end
end
return out
`,
);

/** Marks a consumer dead now (a clean close): its pending entries may be taken over at once. */
export const RETIRE = script(
  'retire',
  `
redis.call('HSET', KEYS[2], ARGV[1], 0)
return 1
`,
);
