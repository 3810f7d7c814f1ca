-- Loaded by every wrk run of the benchmarks: method, body and headers from the environment,
-- and a one-line JSON summary (requests/s, latency percentiles in ms, errors, non-2xx answers).
local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY_FILE")
local auth = os.getenv("BENCH_AUTH")
local cookie = os.getenv("BENCH_COOKIE")
local htmx = os.getenv("BENCH_HTMX")
local idem = os.getenv("BENCH_IDEMPOTENCY_KEY")

wrk.method = method
if body and body ~= "" then
  local f = assert(io.open(body, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end
if auth and auth ~= "" then wrk.headers["Authorization"] = "Bearer " .. auth end
if cookie and cookie ~= "" then wrk.headers["Cookie"] = cookie end
if htmx and htmx ~= "" then wrk.headers["HX-Request"] = "true" end
if idem and idem ~= "" then wrk.headers["Idempotency-Key"] = idem end

local non2xx = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
end

function response(status, headers, body)
  if status < 200 or status >= 300 then bad = bad + 1 end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do non2xx = non2xx + thread:get("bad") end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50": %.2f, "p95": %.2f, ' ..
    '"p99": %.2f, "max": %.2f, "errors": %d, "non2xx": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, errors, non2xx))
end
