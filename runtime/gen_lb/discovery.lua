-- gen_lb.discovery: keeps each upstream's peers in step with Consul.
--
-- One watcher per node: every worker runs a cheap election tick, and the
-- elected worker runs one loop per upstream, each a blocking query on
-- /v1/health/service/NAME?passing=1. Results go to gen_lb.peers; the last good
-- lists go to the dump file. Whatever Consul answers (errors, timeouts,
-- non-200s, garbage, an empty list under empty=keep) the current peers stay
-- until a usable answer replaces them. A failing loop is restarted by the
-- tick, so no error ends discovery (the hand-built version's defect 9).
--
-- Owns each upstream's watcher state (index, failures, backoff) and the
-- "gen_lb:watcher" lease (through gen_lb.singleton); writes peer lists and
-- their meta through gen_lb.peers and schedules gen_lb.dump. Parsing Consul's
-- answer is gen_lb.discovery_entries; the abortable fetch, gen_lb.discovery_fetch;
-- fallback peers with host names, gen_lb.discovery_fallback (whose loop runs
-- beside the upstream's watch, under the same lease).
local config = require "gen_lb.config"
local cjson = require "cjson.safe"
local consul = require "gen_lb.consul"
local peers = require "gen_lb.peers"
local dump = require "gen_lb.dump"
local lease = require "gen_lb.lease"
local singleton = require "gen_lb.singleton"
local log = require "gen_lb.log"
local entries = require "gen_lb.discovery_entries"
local fetch = require "gen_lb.discovery_fetch"
local seeding = require "gen_lb.discovery_seed"
local fallback = require "gen_lb.discovery_fallback"

local semaphore = require "ngx.semaphore"

local ngx = ngx
local now = ngx.now
local update_time = ngx.update_time
local escape_uri = ngx.escape_uri
local decode = cjson.decode
local concat = table.concat
local sub = string.sub
local gsub = string.gsub
local fmt = string.format
local floor = math.floor
local ipairs = ipairs
local pcall = pcall
local tonumber = tonumber
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local C = config.consul
local WAIT = C.wait
local TIMEOUT = C.timeout
local EMPTY_POLICY = C.empty
-- Backoff after failures: BASE * 2^(n-1), capped, then jittered to 50-100 %.
local BACKOFF_BASE = 0.25
local BACKOFF_CAP = 5
-- Never send index=0 (a non-blocking read) more often than this.
local MIN_ZERO_INTERVAL = 1
-- A blocking query that returns the same index this fast is not blocking.
local MIN_BLOCK = 0.05

-- ------------------------------------------------------------------ helpers

local function query_path(up)
  local q = { "/v1/health/service/", escape_uri(up.service), "?passing=1&wait=", fmt("%dms", floor(WAIT * 1000)) }
  if up.datacenter then
    q[#q + 1] = "&dc="
    q[#q + 1] = escape_uri(up.datacenter)
  end
  for _, tag in ipairs(up.tags) do
    q[#q + 1] = "&tag="
    q[#q + 1] = escape_uri(tag)
  end
  q[#q + 1] = "&index="
  return concat(q)
end

local parse_entries = entries.parse

local get_abortable = fetch.get
local nap = fetch.nap

local function backoff(n)
  return fetch.backoff(n, BACKOFF_BASE, BACKOFF_CAP)
end

local service_key = seeding.service_key
local publish = seeding.publish

--- init_by_lua: every upstream's starting peers (gen_lb.discovery_seed).
_M.seed = seeding.seed

-- ------------------------------------------------------------------ the watcher (one worker)

local LEASE = lease.new("gen_lb:watcher")

-- Each loop has its own clients: a cosocket belongs to the timer that made it.
local function new_clients()
  local clients = {}
  for i, a in ipairs(C.addresses) do
    clients[i] = consul.new({
      address = a,
      timeout = TIMEOUT,
      ssl_verify = C.ssl_verify,
      token_env = C.token_env,
      max_body = consul.MAX_BODY,
      user_agent = config.generator,
    })
  end
  return clients
end

local function new_watcher(name)
  local up = config.upstreams[name]
  return {
    name = name,
    up = up,
    key = service_key(up),
    path = query_path(up),
    addr = 1,
    index = 0,
    last_zero_at = 0,
    failures = 0,
    streak_started = 0,
    streak_kinds = {},
    last_error = nil,
    warned = {},      -- dropped-entry problems of the last answer, to warn of each once
    empty_kept = false,
    synced = false,
  }
end

local function close_clients(clients)
  for _, c in ipairs(clients) do
    c:close()
  end
end

local function current_count(name)
  local list = peers.stored(name)
  return list and #list or 0
end

local function failure(w, clients, err, abort)
  w.failures = w.failures + 1
  w.last_error = err
  local client = clients[w.addr]
  -- One line per streak, plus one for each new kind of failure within it
  -- (digits stripped, so "body of 9000000 bytes" and "of 9000001" are one kind).
  local kind = client.label .. " " .. gsub(err, "%d+", "#")
  if w.failures == 1 then
    w.streak_started = now()
    w.streak_kinds = {}
  end
  if not w.streak_kinds[kind] then
    w.streak_kinds[kind] = true
    local meta = peers.meta(w.name)
    log.warn('upstream "', w.name, '": Consul query to ', client.label, " failed: ", err,
      "; keeping ", current_count(w.name), " ", meta.source, " peer(s) (version ", meta.version or 0,
      "); retrying with backoff", #clients > 1 and " and the next Consul address" or "",
      w.failures > 1 and (" (failure " .. w.failures .. " in a row)") or "")
  end
  peers.update_meta(w.name, { last_error = err, consul_address = client.label, failures = w.failures })
  client:close()
  if #clients > 1 then
    w.addr = w.addr % #clients + 1
  end
  -- After a failure, start again with a fresh read: Consul may have
  -- restarted with lower indexes, and a change may have happened meanwhile.
  w.index = 0
  nap(backoff(w.failures), abort)
end

local function recovered(w, client)
  if w.failures > 0 then
    update_time()
    log.warn('upstream "', w.name, '": Consul answers again (', client.label, ") after ",
      w.failures, " failed attempt(s) over ", fmt("%.1f", now() - w.streak_started), " s; last error: ",
      w.last_error)
    w.failures = 0
  end
end

local function http_error(res)
  local body = res.body and sub(res.body, 1, 200) or ""
  body = body:gsub("%s+", " ")
  local hint = ""
  if res.status == 403 then
    hint = C.token_env and (" (is the token in $" .. C.token_env .. " valid?)")
      or " (the agent needs an ACL token: set consul.token_env)"
  end
  return "HTTP " .. res.status .. hint .. ": " .. body
end

-- Apply a parsed list; returns whether the served list changed.
local function apply(w, list, index, client)
  local name = w.name
  local fields = { key = w.key, index = index, consul_address = client.label, last_error = ngx.null, failures = 0 }
  if #list > 0 then
    w.empty_kept = false
    return publish(name, list, "consul", fields)
  end
  -- Consul lists no passing instance.
  local meta = peers.meta(name)
  if EMPTY_POLICY == "keep" and current_count(name) > 0 and (meta.source == "consul" or meta.source == "dump") then
    if not w.empty_kept then
      log.warn('upstream "', name, '": Consul lists no passing instance of service "', w.up.service,
        '"; keeping the ', current_count(name), " last known good peer(s) (consul.empty = keep)")
      w.empty_kept = true
    end
    fields.last_error = "Consul lists no passing instance; kept the last known good peers"
    peers.update_meta(name, fields)
    return false
  end
  -- Host names among the fallback peers are resolved here (this is a timer).
  local fb = fallback.list(w.up)
  if #fb > 0 then
    return publish(name, fb, "fallback", fields)
  end
  return publish(name, {}, "consul", fields)
end

-- One blocking query and what follows. Yields (cosockets, sleep).
local function step(w, clients, abort, sema)
  if w.index == 0 then
    update_time()
    local since = now() - w.last_zero_at
    if since < MIN_ZERO_INTERVAL then
      nap(MIN_ZERO_INTERVAL - since, abort)
    end
    update_time()
    w.last_zero_at = now()
  end
  local client = clients[w.addr]
  local asked = w.index
  update_time()
  local started = now()
  -- %.0f: Lua's own number formatting would write a large index as 1.2e+14.
  local res, err = get_abortable(client, w.path .. fmt("%.0f", asked), asked > 0 and WAIT or 0, abort, sema)
  if abort() or not LEASE:is_held() then
    return -- superseded while waiting: publish nothing
  end
  if not res then
    return failure(w, clients, err, abort)
  end
  if res.status ~= 200 then
    return failure(w, clients, http_error(res), abort)
  end

  local index = tonumber(res.headers["x-consul-index"])
  local reset = false
  if not index or index < 1 or index % 1 ~= 0 then
    -- Consul's rule: an index of 0 (or none) means start over; MIN_ZERO_INTERVAL paces it.
    if not w.warned_index then
      log.warn('upstream "', w.name, '": Consul sent no usable X-Consul-Index (',
        tostring(res.headers["x-consul-index"]), "); reading without blocking, at most once per ",
        MIN_ZERO_INTERVAL, " s")
      w.warned_index = true
    end
    index, reset = 0, true
  elseif index < asked then
    log.warn('upstream "', w.name, '": X-Consul-Index went backwards (', fmt("%.0f", asked), " -> ",
      fmt("%.0f", index), "); taking this answer and reading afresh with index 0")
    reset = true
  else
    w.warned_index = false
  end

  -- The body is read even when the index did not move (the wait ran out):
  -- it costs little once per wait, and a broken answer is noticed.
  local doc = decode(res.body)
  if doc == nil then
    return failure(w, clients, "answer is not JSON (" .. #res.body .. " bytes: "
      .. gsub(sub(res.body, 1, 40), "[%c\128-\255]", "?") .. ")", abort)
  end
  local list, problems, total, rejected, fresh = parse_entries(doc, w.warned)
  if not list then
    return failure(w, clients, problems, abort)
  end
  if #problems > 0 and #list == 0 and total > 0 then
    return failure(w, clients, "every entry is malformed: " .. log.brief(problems, 3), abort)
  end
  if #fresh > 0 then
    -- Each instance's problem once while it lasts, not once per answer.
    log.warn('upstream "', w.name, '": ignored ', rejected, " of ", total, " Consul entries: ", log.brief(fresh, 3))
  end

  recovered(w, client)
  w.index = reset and 0 or index
  w.synced = true
  if apply(w, list, index, client) then
    dump.schedule()
  end
  if not reset and index == asked then
    update_time()
    if now() - started < MIN_BLOCK then
      -- Same index at once: whatever answered does not block; do not spin.
      nap(MIN_ZERO_INTERVAL, abort)
    end
  end
end

-- Longest a healthy loop may go without a beat: a full blocking query plus a capped backoff.
local STALE_AFTER = WAIT * 17 / 16 + TIMEOUT * 2 + BACKOFF_CAP + MIN_ZERO_INTERVAL + 5

local ADDRESS_LIST
do
  local out = {}
  for i, a in ipairs(C.addresses) do
    out[i] = a.scheme .. "://" .. a.host .. ":" .. a.port
  end
  ADDRESS_LIST = concat(out, ", ")
end

local function become_leader()
  log.change("worker ", ngx.worker.pid(), " is now the Consul watcher (", #config.upstream_names,
    " upstream(s), Consul ", ADDRESS_LIST, ")")
  -- Its first write makes sure the dump matches what is being served.
  dump.schedule()
end

local function stop_leading()
  log.change("worker ", ngx.worker.pid(), " is no longer the Consul watcher")
end

local function housekeeping()
  for _, name in ipairs(config.upstream_names) do
    peers.repair(name)
  end
  dump.retry_if_needed()
end

local watcher = singleton.new({
  lease = LEASE,
  what = "discovery",
  on_lead = become_leader,
  on_step_down = stop_leading,
  on_tick = housekeeping,
})

-- One loop per upstream, with its own Consul clients: a cosocket belongs to
-- the timer that made it.
local function watch(w, lp, abort)
  w.index = 0
  w.synced = false
  local clients = new_clients()
  local sema = semaphore.new()
  while not abort() do
    singleton.beat(lp)
    local ok, err = pcall(step, w, clients, abort, sema)
    if not ok then
      -- A bug, not a Consul problem: say so, and keep going.
      log.err('upstream "', w.name, '": watcher step failed: ', err)
      close_clients(clients)
      w.index = 0
      nap(BACKOFF_CAP, abort)
    end
  end
  close_clients(clients)
end

for _, name in ipairs(config.upstream_names) do
  local w = new_watcher(name)
  watcher:loop({
    name = 'the watcher of upstream "' .. name .. '"',
    stale_after = STALE_AFTER,
    run = function(lp, abort)
      return watch(w, lp, abort)
    end,
  })
  if fallback.has_names(name) then
    watcher:loop({
      name = 'the fallback resolver of upstream "' .. name .. '"',
      stale_after = fallback.stale_after(name),
      run = function(lp, abort)
        return fallback.watch(name, lp, abort)
      end,
    })
  end
end

--- The election tick (a timer callback; runtime.init_worker starts it in
--- every worker when there are upstreams).
_M.tick = watcher.tick
_M.TICK = lease.TICK

-- For tests and status.
function _M.is_watcher()
  return watcher:is_leading()
end

return _M
