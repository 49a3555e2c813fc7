-- gen_lb.runtime: the init_by_lua and init_worker_by_lua entry points, and
-- the one place that initialises modules and starts their timers.
--
-- init (master, before the fork): check the config against the contract
-- (gen_lb.config_check) and the shared dicts, load every module
-- so workers share the compiled code, prepare the dump directory for the
-- worker user, and seed each upstream's peers from the dump file or its
-- fallback list. init_worker: seed the random generator, set up each
-- module's per-worker state, then start the timers: the watcher election
-- (discovery), the checker election (health), the balancer's counter flush.
-- May touch: nothing but what those modules expose.
local config = require "gen_lb.config"

local ngx = ngx
local error = error
local floor = math.floor
local ipairs = ipairs
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local DICT_ROLES = { "peers", "health", "locks" }

function _M.init()
  -- Before any module reads a field: a config.lua from another gen-lb
  -- version (or edited) fails here, naming the field, not at first use.
  local ok, err = require("gen_lb.config_check").check(config)
  if not ok then
    error("gen-lb: lua/gen_lb/config.lua does not match this runtime: " .. err
      .. " (rebuild with gen-lb build, and install every file of the build)", 0)
  end
  for _, role in ipairs(DICT_ROLES) do
    local name = config.dicts[role]
    if not ngx.shared[name] then
      error("gen-lb: lua_shared_dict " .. tostring(name) .. " is not declared (needed for " .. role
        .. "); the generated nginx.conf declares it: was it edited?", 0)
    end
  end

  -- Loaded here so that every worker inherits them, and so that a module
  -- that fails to load stops the start instead of a worker's first use.
  require "gen_lb.peers"
  require "gen_lb.health"
  require "gen_lb.health_checker"
  require "gen_lb.balancer"
  require "gen_lb.status"
  require "gen_lb.discovery_hold"
  local log = require "gen_lb.log"
  local dump = require "gen_lb.dump"
  local discovery = require "gen_lb.discovery"

  ok, err = dump.prepare_dir()
  if dump.refused then
    log.err(dump.refused)
  elseif not ok then
    log.warn("the dump file ", dump.path, " may not be writable by workers: ", err)
  end
  discovery.seed()
end

local function every(what, period, callback)
  local ok, err = ngx.timer.every(period, callback)
  if not ok then
    error("gen-lb: cannot start the " .. what .. " timer: " .. tostring(err))
  end
end

local function at_once(what, callback)
  local ok, err = ngx.timer.at(0, callback)
  if not ok then
    error("gen-lb: cannot start the " .. what .. " timer: " .. tostring(err))
  end
end

function _M.init_worker()
  math.randomseed(floor(ngx.now() * 1000) + ngx.worker.pid())
  local discovery = require "gen_lb.discovery"
  local health = require "gen_lb.health"
  local checker = require "gen_lb.health_checker"
  local balancer = require "gen_lb.balancer"
  balancer.init_worker()
  checker.init_worker()
  if #config.upstream_names == 0 then
    -- No checker runs: one worker forgets what the previous config left.
    if ngx.worker.id() == 0 then
      at_once("forget", health.forget_removed_upstreams)
    end
    return
  end
  -- Every worker joins both elections; the first round does not wait a tick.
  every("discovery", discovery.TICK, discovery.tick)
  at_once("discovery", discovery.tick)
  every("health checker", checker.TICK, checker.tick)
  at_once("health checker", checker.tick)
  every("balancer counters", balancer.FLUSH_EVERY, balancer.on_flush)
end

return _M
