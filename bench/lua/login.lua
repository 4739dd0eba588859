-- POST a sign-in, rotating over the pre-registered accounts in $BENCH_USERS (one email a line),
-- all with the password $BENCH_PASSWORD. $BENCH_FORMAT is "json" (authgate: {"email", "password"})
-- or "form" (fastapi-users' OAuth2 form: username=...&password=...).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local users, index, password, form
function init(_args)
  users = common.lines(os.getenv("BENCH_USERS"))
  password = os.getenv("BENCH_PASSWORD")
  form = os.getenv("BENCH_FORMAT") == "form"
  index = ((id or 0) * 7919) % #users
end

function request()
  index = index % #users + 1
  local email = users[index]
  if form then
    local body = "grant_type=password&username=" .. urlencode(email) .. "&password=" .. urlencode(password)
    return wrk.format("POST", nil, { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
  end
  local body = string.format('{"email": "%s", "password": "%s"}', email, password)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

done = common.done
