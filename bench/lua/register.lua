-- POST a registration with a unique email every request: $BENCH_RUN, the wrk thread's number
-- and a per-thread counter make the address, so no two requests of one run collide.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local run, password, sent
function init(_args)
  run = os.getenv("BENCH_RUN") or "0"
  password = os.getenv("BENCH_PASSWORD")
  sent = 0
end

function request()
  sent = sent + 1
  local body = string.format('{"email": "reg-%s-%d-%d@bench.example.com", "password": "%s"}',
    run, id or 0, sent, password)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

done = common.done
