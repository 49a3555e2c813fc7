-- gen_lb.discovery_fallback: an upstream's fallback peers as a peer list,
-- host names resolved. An entry that is an IP is a peer as it is; one that
-- is a host name (validation accepts it only where the target ships
-- lua-resty-dns and nginx.http.resolver is set) becomes one peer per address
-- it resolves to, through gen_lb.resolve and gen_lb.discovery_entries.add_peer:
-- the same path as a Consul Address that is a host name (IPv4 and IPv6
-- normalised, each ip:port once). Never a name: set_current_peer takes IPs.
--
-- DNS needs cosockets, which init_by_lua has not: an upstream with a name
-- among its fallback peers is seeded with none (its requests wait in
-- gen_lb.discovery_hold), and a loop of the Consul watcher (one worker per
-- node) publishes the list once resolved; while the fallback is what the
-- upstream serves it resolves again when the answer's TTL runs out (at most
-- once a second, at least once an hour), and after a DNS failure it retries
-- with backoff, keeping the name's last addresses meanwhile.
--
-- Owns this worker's last good addresses of each fallback name and each
-- loop's warned problems; publishes through gen_lb.discovery_seed.publish
-- (gen_lb.peers) only while the upstream's source is "none" or "fallback",
-- so a Consul answer is never replaced.
local config = require "gen_lb.config"
local peers = require "gen_lb.peers"
local resolve = require "gen_lb.resolve"
local entries = require "gen_lb.discovery_entries"
local fetch = require "gen_lb.discovery_fetch"
local singleton = require "gen_lb.singleton"
local log = require "gen_lb.log"

local ipairs = ipairs
local min = math.min
local max = math.max

local _M = { _VERSION = "0.1.0" }

-- Re-resolution after a good answer: its TTL, kept within these bounds
-- (Consul's DNS and many stubs answer TTL 0: not a query loop).
local MIN_REFRESH = 1
local MAX_REFRESH = 3600
-- Retry after a DNS failure: BASE * 2^(n-1), capped, jittered to 50-100 %.
local RETRY_BASE = 0.5
local RETRY_CAP = 10
-- How often an idle loop (Consul serves the upstream) looks again.
local IDLE = 1
-- Longest nap between heartbeats; well under the loop's stale_after.
local BEAT = 5

-- Upstream name -> whether a fallback peer of it is a host name.
local has_names = {}
for _, name in ipairs(config.upstream_names) do
  for _, p in ipairs(config.upstreams[name].fallback) do
    if peers.classify(p.host) == "name" then
      has_names[name] = true
    end
  end
end

--- Whether upstream `name` has a fallback peer that is a host name (so its
--- fallback list exists only once a timer has resolved it).
function _M.has_names(name)
  return has_names[name] == true
end

local last = {}   -- host name -> the addresses it last resolved to

--- The fallback peers of `up` as a peer list ({host, port, weight}), its host
--- names resolved (yields: DNS; a timer only when has_names), the problems
--- met (a name that did not resolve: its last addresses are used, if any),
--- and the seconds until an answer runs out (nil without names).
function _M.list(up)
  local list, by_id, problems = {}, {}, {}
  local ttl
  for _, p in ipairs(up.fallback) do
    local peer = { host = p.host, port = p.port, weight = p.weight }
    if peers.classify(p.host) == "name" then
      local addrs, err, valid = resolve.resolve(p.host)
      if addrs then
        last[p.host] = addrs
        ttl = min(ttl or valid, valid)
      else
        addrs = last[p.host]
        problems[#problems + 1] = "fallback peer " .. p.host .. ":" .. p.port .. " did not resolve: " .. err
          .. (addrs and "; keeping its last addresses" or "")
      end
      peer.hosts = addrs or {}
    end
    entries.add_peer(list, by_id, peer, problems)
  end
  return list, problems, ttl
end

local function serving_fallback(name)
  local source = peers.meta(name).source
  return source == "none" or source == "fallback"
end

-- ngx.sleep for `seconds`, beating every BEAT so the tick does not take the
-- loop for dead, giving up when abort() says so.
local function nap(lp, seconds, abort)
  while seconds > 0 and not abort() do
    local slice = min(seconds, BEAT)
    fetch.nap(slice, abort)
    singleton.beat(lp)
    seconds = seconds - slice
  end
end

--- A loop of the Consul watcher (gen_lb.singleton) for upstream `name`,
--- which has host names among its fallback peers: see the header.
function _M.watch(name, lp, abort)
  -- Required here, not at load: gen_lb.discovery_seed requires this module.
  local publish = require("gen_lb.discovery_seed").publish
  local up = config.upstreams[name]
  local failures, warned = 0, {}
  while not abort() do
    singleton.beat(lp)
    local wait = IDLE
    if serving_fallback(name) then
      local list, problems, ttl = _M.list(up)
      if abort() then
        return
      end
      for _, why in ipairs(entries.fresh_problems(problems, warned)) do
        log.warn('upstream "', name, '": ', why, "; retrying")
      end
      if #problems > 0 then
        failures = failures + 1
        wait = fetch.backoff(failures, RETRY_BASE, RETRY_CAP)
      else
        failures = 0
        wait = max(MIN_REFRESH, min(MAX_REFRESH, ttl or MAX_REFRESH))
      end
      -- Consul may have answered while DNS was asked: never replace its list.
      if #list > 0 and serving_fallback(name) then
        publish(name, list, "fallback", {})
      end
    end
    nap(lp, wait, abort)
  end
end

-- Longest a loop goes without a beat: a DNS round per name (A and AAAA,
-- two tries each) and a nap slice.
function _M.stale_after(name)
  return #config.upstreams[name].fallback * 4 * 2 + BEAT + 10
end

return _M
