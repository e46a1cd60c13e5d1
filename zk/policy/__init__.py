"""The healthcare access-policy DSL: grammar -> AST (``Policy``) -> circuit.

    policy lab_read { category lab; roles physician, nurse; licence valid; }

``parse_policy`` / ``Policy(...)`` build the AST, ``compile_policy`` turns it into a circom
main over the ``zk/circuits/lib`` templates, its ``CircuitSpec`` and the public input values
the policy implies.
"""

from zk.policy.ast import Policy, PolicyError, role_names
from zk.policy.compiler import (
    CompiledPolicy,
    compile_policy,
    estimate_constraints,
    generate_circom,
    implied_inputs,
    public_inputs,
)
from zk.policy.grammar import parse_policies, parse_policy

__all__ = [
    "CompiledPolicy",
    "Policy",
    "PolicyError",
    "compile_policy",
    "estimate_constraints",
    "generate_circom",
    "implied_inputs",
    "parse_policies",
    "parse_policy",
    "public_inputs",
    "role_names",
]
