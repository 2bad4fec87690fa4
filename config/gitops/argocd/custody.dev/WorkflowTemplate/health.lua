-- Argo CD health of a custody.dev WorkflowTemplate (docs/gitops.md). Healthy: the controller
-- checked the latest spec and it can run. Degraded: it cannot (Stalled: InvalidSpec, or a grant
-- its runs' steps request does not exist, does not cover them or ended).
-- Progressing: the controller has not checked the latest spec yet.
local hs = {status = "Progressing", message = "Waiting for the Custody controller"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "The controller has not checked the latest spec yet"
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
