-- GET a protected resource with bearer tokens, rotating over the tokens in $BENCH_TOKENS
-- (one per line), each connection thread starting at a different one.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local tokens, index
function init(_args)
  tokens = common.lines(os.getenv("BENCH_TOKENS"))
  index = (id or 0) % #tokens
end

function request()
  index = index % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[index] })
end

done = common.done
