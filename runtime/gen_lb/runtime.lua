-- gen_lb.runtime: the init_by_lua and init_worker_by_lua entry points.
--
-- init (master, before the fork): check the shared dicts, load every module
-- so workers share the compiled code, prepare the dump directory for the
-- worker user, and seed each upstream's peers from the dump file or its
-- fallback list. init_worker: seed the random generator, join the watcher
-- election, start the health checker.
local config = require "gen_lb.config"

local ngx = ngx
local error = error
local pcall = pcall
local require = require
local find = string.find
local floor = math.floor
local ipairs = ipairs
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local DICT_ROLES = { "peers", "health", "locks" }

-- The health checker is another module; it may not be there.
local function health_module()
  local ok, mod = pcall(require, "gen_lb.health")
  if ok then
    return mod
  end
  if find(tostring(mod), "module 'gen_lb.health' not found", 1, true) then
    return nil
  end
  -- It exists but failed to load: that must not pass silently.
  error(mod, 0)
end

function _M.init()
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
  require "gen_lb.balancer"
  require "gen_lb.status"
  local log = require "gen_lb.log"
  local dump = require "gen_lb.dump"
  local discovery = require "gen_lb.discovery"
  health_module()

  local ok, err = dump.prepare_dir()
  if not ok then
    log.warn("the dump file ", dump.path, " may not be writable by workers: ", err)
  end
  discovery.seed()
end

function _M.init_worker()
  math.randomseed(floor(ngx.now() * 1000) + ngx.worker.pid())
  require("gen_lb.discovery").init_worker()
  local health = health_module()
  if health and health.init_worker then
    health.init_worker()
  end
end

return _M
