-- Argo CD health of a custody.dev CronWorkflow (docs/gitops.md). Healthy: the controller schedules
-- the latest spec, or it is suspended on purpose (spec.suspend; the message says so). Degraded:
-- it cannot schedule (Stalled: the schedule or time zone does not parse, the template is missing,
-- or its author may not use a grant its runs request). Progressing: the controller has not seen the latest spec yet. The health of the runs
-- is their own: each run is a Workflow.
local hs = {status = "Progressing", message = "Waiting for the Custody controller"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "The controller has not seen the latest spec yet"
  return hs
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Stalled" and c.status == "True" then
    hs.status = "Degraded"
    hs.message = c.message
    return hs
  end
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" and c.status == "True" then
    hs.status = "Healthy"
    hs.message = c.message
  end
end
return hs
