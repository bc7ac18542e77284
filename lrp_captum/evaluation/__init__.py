"""How good is an explanation: faithfulness metrics (:mod:`.metrics`), ranking explanation
methods by them (:mod:`.ranking`), and the attention-based explanations LRP is compared with
(:mod:`.attention_maps`, :mod:`.attention_rollout`)."""
