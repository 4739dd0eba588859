-- Shared by the bench scripts: read a file of lines, and print wrk's summary as one JSON line
-- (prefixed BENCH_JSON) for bench.py to parse. Latencies are in microseconds.
local M = {}

function M.lines(path)
  local items = {}
  local file = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in file:lines() do
    if line ~= "" then
      items[#items + 1] = line
    end
  end
  file:close()
  assert(#items > 0, "empty file " .. path)
  return items
end

function M.done(summary, latency, _requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end

return M
