-- gen_lb.status: the status endpoint (content_by_lua; access is nginx's
-- allow list then `deny all`).
--
-- GET <path>                      JSON (below)
-- GET <path>?format=prometheus    Prometheus text exposition 0.0.4
-- GET <path>?upstream=NAME        either, for one upstream only
--
-- JSON: {build_id, generator, time, pid, health_checker (pid), dump {path,
-- written_at, ok, error}, upstreams {NAME: {service, balance, fail_open,
-- retries, log_phase, health_checks {active, passive}, source, peers_version,
-- consul_index, updated_at, changed_at, last_error, consul_address, total,
-- healthy, all_down, failing ("open"|"closed", only when all_down), peers
-- [{address, weight, healthy, state, down_by, since, reason,
-- consecutive_successes, consecutive_failures, last_check,
-- last_check_result, requests, failures and in_flight (only with
-- log_phase)}]}} (discovery: dns upstreams are listed there too, with
-- source "dns", see gen_lb.status_nginx), static_upstreams
-- {NAME: ...} (static upstreams, see gen_lb.status_nginx)}.
-- build_id and generator stay at the top level: `gen-lb install` verifies
-- the running build through them.
--
-- Prometheus metrics (labels: upstream, and peer = "host:port"):
--   gen_lb_info{build_id,generator}                 1
--   gen_lb_upstream_info{upstream,service,balance}   1
--   gen_lb_upstream_peers{upstream}                 peers discovered
--   gen_lb_upstream_healthy_peers{upstream}         peers healthy
--   gen_lb_upstream_all_down{upstream}              1 when every peer is unhealthy
--   gen_lb_upstream_fail_open{upstream}             1 fail open, 0 fail closed
--   gen_lb_upstream_peers_version{upstream}         peer list version
--   gen_lb_upstream_consul_index{upstream}          Consul index of the list
--   gen_lb_upstream_updated_timestamp_seconds{upstream}  last Consul answer
--   gen_lb_peer_up{upstream,peer}                   1 healthy, 0 down
--   gen_lb_peer_weight{upstream,peer}               weight from Consul
--   gen_lb_peer_consecutive_successes{upstream,peer}  active checks
--   gen_lb_peer_consecutive_failures{upstream,peer}   active checks
--   gen_lb_peer_requests_total{upstream,peer}       tries sent (counter)
--   gen_lb_peer_failures_total{upstream,peer}       failed tries (counter)
--   gen_lb_peer_in_flight{upstream,peer}            tries in flight
--   gen_lb_dump_ok                                  1 when the last dump write worked
--   gen_lb_dump_written_timestamp_seconds           when it was written
-- Counters are added up by each worker once a second, so they lag by up to 1 s.
--
-- Owns the status and Prometheus documents (src/contract/status.ts is their
-- schema); reads the peers and health dicts, writes nothing.
local config = require "gen_lb.config"
local cjson = require "cjson.safe"
local peers = require "gen_lb.peers"
local health = require "gen_lb.health"
local checker = require "gen_lb.health_checker"
local nginx_owned = require "gen_lb.status_nginx"

local ngx = ngx
local encode = cjson.encode
local concat = table.concat
local gsub = string.gsub
local sub = string.sub
local fmt = string.format
local ipairs = ipairs
local tostring = tostring
local type = type

local _M = { _VERSION = "0.1.0" }

local hdict = ngx.shared[config.dicts.health]
local key = health.key

local STATES = { [0] = "healthy", [1] = "down", [2] = "down" }
local DOWN_BY = { [1] = "active", [2] = "passive" }

-- failures and in_flight only where the balancer sees requests end (the
-- upstream's log phase): absent otherwise.
local function peer_status(name, p, workers, log_phase)
  local id = p.id
  local st = hdict:get(key("st", name, id)) or 0
  local inflight, failures
  if log_phase then
    inflight = 0
    for w = 0, workers - 1 do
      inflight = inflight + (hdict:get(key("inf" .. w, name, id)) or 0)
    end
    failures = hdict:get(key("fail", name, id)) or 0
  end
  return {
    address = id,
    weight = p.weight,
    healthy = st == 0,
    state = STATES[st] or "down",
    down_by = DOWN_BY[st],
    since = hdict:get(key("at", name, id)),
    reason = hdict:get(key("why", name, id)),
    consecutive_successes = hdict:get(key("ok", name, id)) or 0,
    consecutive_failures = hdict:get(key("ko", name, id)) or 0,
    last_check = hdict:get(key("chk", name, id)),
    last_check_result = hdict:get(key("last", name, id)),
    requests = hdict:get(key("req", name, id)) or 0,
    failures = failures,
    in_flight = inflight,
  }
end

local function upstream_status(name)
  if nginx_owned.has("dns", name) then
    return nginx_owned.upstream("dns", name)
  end
  local up = config.upstreams[name]
  local list = peers.get(name)
  local meta = peers.meta(name)
  local workers = ngx.worker.count()
  local hc = up.healthcheck
  local out = {
    service = up.service,
    balance = up.balance,
    fail_open = up.fail_open,
    retries = up.retries,
    log_phase = up.log_phase,
    health_checks = { active = hc.active and hc.active.type or false, passive = hc.passive ~= nil },
    source = meta.source,
    peers_version = meta.version,
    consul_index = meta.index,
    updated_at = meta.updated_at,
    changed_at = meta.changed_at,
    last_error = meta.last_error,
    consul_address = meta.consul_address,
  }
  local ps, healthy = {}, 0
  for i, p in ipairs(list) do
    ps[i] = peer_status(name, p, workers, up.log_phase)
    if ps[i].healthy then
      healthy = healthy + 1
    end
  end
  out.total = #ps
  out.healthy = healthy
  out.all_down = #ps > 0 and healthy == 0
  if out.all_down then
    out.failing = out.fail_open and "open" or "closed"
  end
  return out, ps
end

-- Consul upstreams (the Lua engine's, then discovery: dns ones), then static ones (gen_lb.status_nginx).
local NONE = {}
local all_names = {}
for _, list in ipairs({ config.upstream_names, nginx_owned.names("dns") }) do
  for _, name in ipairs(list) do
    all_names[#all_names + 1] = name
  end
end

local function selected()
  local only = ngx.var.arg_upstream
  if only then
    only = ngx.unescape_uri(only)
    if config.upstreams[only] or nginx_owned.has("dns", only) then
      return { only }, NONE
    end
    if nginx_owned.has("static", only) then
      return NONE, { only }
    end
    return nil, only
  end
  return all_names, nginx_owned.names("static")
end

-- cjson encodes an empty table as {}: the peers arrays are assembled by hand.
local function upstream_json(u, ps)
  local parts = {}
  for i, p in ipairs(ps) do
    parts[i] = encode(p)
  end
  local head = encode(u)
  local sep = head == "{}" and "" or ","
  return sub(head, 1, -2) .. sep .. '"peers":[' .. concat(parts, ",") .. "]}"
end

local function serve_json(names, statics)
  local top = {
    build_id = config.build_id,
    generator = config.generator,
    time = ngx.now(),
    pid = ngx.worker.pid(),
    health_checker = checker.checker_pid(),
    dump = peers.dump_state(),
  }
  local ups = {}
  for i, name in ipairs(names) do
    local u, ps = upstream_status(name)
    ups[i] = encode(name) .. ":" .. upstream_json(u, ps)
  end
  local head = encode(top)
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(sub(head, 1, -2), ',"upstreams":{', concat(ups, ","), "},", nginx_owned.static_json(statics), "}\n")
end

-- ------------------------------------------------------------------ Prometheus

local function label(v)
  v = gsub(tostring(v), "\\", "\\\\")
  v = gsub(v, "\n", "\\n")
  return (gsub(v, '"', '\\"'))
end

local function number(v)
  if type(v) == "boolean" then
    return v and "1" or "0"
  end
  if type(v) ~= "number" then
    return "0"
  end
  if v % 1 == 0 and v > -1e15 and v < 1e15 then
    return fmt("%d", v)
  end
  return fmt("%.17g", v)
end

local UPSTREAM_METRICS = {
  { "gen_lb_upstream_peers", "gauge", "Peers discovered for the upstream.", "total" },
  { "gen_lb_upstream_healthy_peers", "gauge", "Peers currently healthy.", "healthy" },
  { "gen_lb_upstream_all_down", "gauge", "1 when every peer of the upstream is unhealthy.", "all_down" },
  { "gen_lb_upstream_fail_open", "gauge", "1 when the upstream fails open, 0 when it fails closed.", "fail_open" },
  { "gen_lb_upstream_peers_version", "gauge", "Version of the upstream's peer list.", "peers_version" },
  { "gen_lb_upstream_consul_index", "gauge", "Consul index the peer list was read at.", "consul_index" },
  { "gen_lb_upstream_updated_timestamp_seconds", "gauge", "When the peer list was last confirmed.", "updated_at" },
}

local PEER_METRICS = {
  { "gen_lb_peer_up", "gauge", "1 when the peer is healthy, 0 when it is down.", "healthy" },
  { "gen_lb_peer_weight", "gauge", "Weight of the peer (Consul Weights.Passing).", "weight" },
  { "gen_lb_peer_consecutive_successes", "gauge", "Active health checks passed in a row.", "consecutive_successes" },
  { "gen_lb_peer_consecutive_failures", "gauge", "Active health checks failed in a row.", "consecutive_failures" },
  { "gen_lb_peer_requests_total", "counter", "Tries sent to the peer.", "requests" },
  { "gen_lb_peer_failures_total", "counter", "Tries to the peer that failed (error, timeout, 5xx).", "failures" },
  { "gen_lb_peer_in_flight", "gauge", "Tries to the peer in flight.", "in_flight" },
}

local function serve_prometheus(names, statics)
  local out, n = {}, 0
  local function add(s)
    n = n + 1
    out[n] = s
  end
  add("# HELP gen_lb_info The running gen-lb build.\n# TYPE gen_lb_info gauge\n")
  add('gen_lb_info{build_id="' .. label(config.build_id) .. '",generator="' .. label(config.generator) .. '"} 1\n')
  local data = {}
  for i, name in ipairs(names) do
    local u, ps = upstream_status(name)
    data[i] = { name = name, u = u, ps = ps }
  end
  add("# HELP gen_lb_upstream_info Upstreams and their Consul service.\n# TYPE gen_lb_upstream_info gauge\n")
  for _, d in ipairs(data) do
    add('gen_lb_upstream_info{upstream="' .. label(d.name) .. '",service="' .. label(d.u.service)
      .. '",balance="' .. label(d.u.balance) .. '"} 1\n')
  end
  for _, m in ipairs(UPSTREAM_METRICS) do
    add("# HELP " .. m[1] .. " " .. m[3] .. "\n# TYPE " .. m[1] .. " " .. m[2] .. "\n")
    for _, d in ipairs(data) do
      add(m[1] .. '{upstream="' .. label(d.name) .. '"} ' .. number(d.u[m[4]]) .. "\n")
    end
  end
  for _, m in ipairs(PEER_METRICS) do
    add("# HELP " .. m[1] .. " " .. m[3] .. "\n# TYPE " .. m[1] .. " " .. m[2] .. "\n")
    for _, d in ipairs(data) do
      local up = label(d.name)
      for _, p in ipairs(d.ps) do
        -- No sample for what the upstream does not count (failures, in_flight without a log phase).
        if p[m[4]] ~= nil then
          add(m[1] .. '{upstream="' .. up .. '",peer="' .. label(p.address) .. '"} ' .. number(p[m[4]]) .. "\n")
        end
      end
    end
  end
  nginx_owned.static_prometheus(statics, add, label, number)
  local dump = peers.dump_state()
  add("# HELP gen_lb_dump_ok 1 when the last write of the peers dump file worked.\n# TYPE gen_lb_dump_ok gauge\n")
  add("gen_lb_dump_ok " .. number(dump.ok == true) .. "\n")
  add("# HELP gen_lb_dump_written_timestamp_seconds When the peers dump file was last written.\n"
    .. "# TYPE gen_lb_dump_written_timestamp_seconds gauge\n")
  add("gen_lb_dump_written_timestamp_seconds " .. number(dump.written_at) .. "\n")
  ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(out)
end

--- content_by_lua of the status location.
function _M.serve()
  local names, statics = selected()
  if not names then
    local unknown = statics
    ngx.status = ngx.HTTP_NOT_FOUND
    ngx.header["Content-Type"] = "application/json"
    ngx.say(encode({ error = "no upstream named " .. unknown }))
    return
  end
  local format = ngx.var.arg_format
  if format == "prometheus" then
    return serve_prometheus(names, statics)
  end
  if format ~= nil and format ~= "json" then
    ngx.status = ngx.HTTP_BAD_REQUEST
    ngx.header["Content-Type"] = "application/json"
    ngx.say(encode({ error = "format must be json or prometheus" }))
    return
  end
  return serve_json(names, statics)
end

return _M
