-- wrk script for POST /budget/v1/budgets/check: each request names one of BENCH_PROJECTS
-- projects (round robin per thread); counts allowed and denied answers from the bodies.
local path = "/budget/v1/budgets/check"
local token = os.getenv("BENCH_TOKEN")
local cost = os.getenv("BENCH_COST") or "1"
local prefix = os.getenv("BENCH_PROJECT_PREFIX") or "p"
local projects = tonumber(os.getenv("BENCH_PROJECTS") or "16")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  allowed = 0
  denied = 0
  other = 0
  codes = {}
end

request = function()
  counter = counter + 1
  local project = prefix .. tostring(counter % projects)
  local body = '{"estimated_cost": "' .. cost .. '", "resource_type": "llm.tokens", ' ..
    '"operation_context": {"project_id": "' .. project .. '"}}'
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
  if status == 200 and string.find(body, '^{"allowed":true') then
    allowed = allowed + 1
  elseif status == 200 and string.find(body, '^{"allowed":false') then
    denied = denied + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, d, o = 0, 0, 0
  local merged = {}
  for _, t in ipairs(threads) do
    a = a + t:get("allowed")
    d = d + t:get("denied")
    o = o + t:get("other")
    local c = t:get("codes")
    if c then
      for k, v in pairs(c) do merged[k] = (merged[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%d": %d', k, v)) end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"allowed": %d, "denied": %d, "other": %d, "socket_errors": %d, "codes": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), a, d, o,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ", ")))
end
