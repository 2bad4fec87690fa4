-- Argo CD health of a custody.dev Workflow, from the conditions the controller sets
-- (docs/gitops.md). Healthy: succeeded. Degraded: failed, timed out, cancelled or invalid.
-- Suspended: the run is suspended (spec.suspend), or a step waits for an approver. Progressing: anything else, including a finished run
-- whose credential revocation is still pending.
local hs = {status = "Progressing", message = "Waiting for the Custody controller"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "The controller has not seen the latest spec yet"
  return hs
end
local ready, stalled, reconciling
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "Stalled" then stalled = c end
  if c.type == "Reconciling" then reconciling = c end
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if reconciling ~= nil and reconciling.status == "True" and reconciling.reason == "RevocationPending" then
  hs.message = reconciling.message
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end
if ready ~= nil and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = ready.message
  return hs
end
if obj.status.steps ~= nil then
  for _, s in ipairs(obj.status.steps) do
    if s.phase == "WaitingForApproval" then
      hs.status = "Suspended"
      hs.message = "Step " .. s.name .. " waits for an approver (annotation approve.custody.dev/" .. s.name .. ")"
      return hs
    end
  end
end
if ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
end
return hs
