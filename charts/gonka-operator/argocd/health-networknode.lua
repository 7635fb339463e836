-- Argo CD health of a gonka.ai NetworkNode (resource.customizations.health.gonka.ai_NetworkNode).
-- Progressing until the operator has observed the current generation and decided Ready;
-- Healthy on Ready=True; Degraded on a failure the operator reports (Degraded=True, or Ready=False
-- with a failure reason: the same list as for InferenceNodes); Progressing otherwise.
local failures = {
  Rejected = true, InsufficientGPU = true, Unschedulable = true, ApplyFailed = true,
  AdminUnreachable = true, NetworkNodeNotFound = true,
}
local hs = {status = "Progressing", message = "Waiting for the operator to reconcile the NetworkNode"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local ready, degraded = nil, nil
for _, c in ipairs(obj.status.conditions or {}) do
  if c.type == "Ready" then ready = c end
  if c.type == "Degraded" then degraded = c end
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = (degraded.reason or "Degraded") .. ": " .. (degraded.message or "")
  return hs
end
if ready == nil or ready.status == "Unknown" then
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then hs.message = ready.message end
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
if failures[ready.reason] then
  hs.status = "Degraded"
end
return hs
