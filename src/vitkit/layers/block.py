"""The pre-LN Transformer encoder block of the paper (eqs. 2-3) and its parts."""

from __future__ import annotations

import torch
from torch import nn

from vitkit.layers import bias_grad, fused_mlp
from vitkit.layers.attention import Attention
from vitkit.layers.linear_gelu import linear_gelu, matmul_dtype
from vitkit.layers.norm import LayerNorm, folded_parameters


class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout.

    gelu="tanh" (or `use_tanh_gelu()`, which the speed option fused_gelu calls) computes GELU's tanh
    form, fused into fc1's matmul for inference on CUDA (vitkit.layers.linear_gelu says why).
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0, gelu: str = "erf") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)
        self.tanh_gelu = False
        self.epilogues = False  # speed option mlp_epilogues: train through cuBLASLt's GELU epilogues
        self.column_sum_bias_grad = False  # speed option bias_grad (vitkit.layers.bias_grad)
        self.dgelu_bias_sum = False  # speed option dgelu_bias_sum (vitkit.layers.dgelu_matmul)
        if gelu == "tanh":
            self.use_tanh_gelu()

    def use_tanh_gelu(self) -> None:
        self.tanh_gelu = True
        self.act = nn.GELU(approximate="tanh")  # says what forward computes; linear_gelu computes it

    def forward(self, x: torch.Tensor, affine: LayerNorm | None = None,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """affine: the LayerNorm whose affine x still lacks (x = affine.normalize(...)), folded into fc1.
        residual: returns residual + MLP(x), the add inside fc2's matmul (speed option residual_epilogue;
        only without dropout, which would come between the two)."""
        dropping = self.training and self.drop.p > 0
        if residual is not None and dropping:
            raise ValueError("an MLP with dropout cannot add the residual inside fc2's matmul")
        fc1 = self.fc1
        if not self.tanh_gelu:
            hidden = self.act(bias_grad.layer_linear(x, fc1, affine))
        else:
            w1, b1 = folded_parameters(fc1, affine)
            if self.epilogues and fused_mlp.applies(x) and not dropping:
                # training on CUDA: GELU and its backward inside the matmuls (vitkit.layers.fused_mlp)
                return fused_mlp.mlp_tanh_gelu(x, w1, b1, self.fc2.weight, self.fc2.bias,
                                               column_sums=self.column_sum_bias_grad, residual=residual,
                                               dgelu_sums=self.dgelu_bias_sum)
            hidden = linear_gelu(x, w1, b1)
        if residual is not None:
            return bias_grad.residual_linear(hidden, self.fc2, residual, self.column_sum_bias_grad)
        out = bias_grad.layer_linear(self.drop(hidden), self.fc2, column_sums=self.column_sum_bias_grad)
        return self.drop(out)


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples, rescaling the kept ones."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, qkv_bias: bool = True,
                 dropout: float = 0.0, attn_dropout: float = 0.0, drop_path: float = 0.0,
                 norm_eps: float = 1e-6, gelu: str = "erf") -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_dropout=attn_dropout,
                              proj_dropout=dropout)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_dim, dropout=dropout, gelu=gelu)
        self.drop_path2 = DropPath(drop_path)
        self.fold_norm = False  # speed option fold_norm: the norms' affines inside qkv and fc1 when training
        self.residual_epilogue = False  # speed option residual_epilogue: the residual adds inside proj and fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm1, affine1, norm2, affine2 = self.norm1, None, self.norm2, None
        if self.fold_norm and torch.is_grad_enabled():
            # gamma's and beta's gradients then come from weight-sized tensors, not sums over tokens
            # (vitkit.layers.norm); inference gains nothing from it and keeps the plain path
            norm1, affine1, norm2, affine2 = self.norm1.normalize, self.norm1, self.norm2.normalize, self.norm2
        if self._adds_in_matmuls(x):
            x = self.attn(norm1(x), affine=affine1, residual=x)[0]
            return self.mlp(norm2(x), affine=affine2, residual=x)
        x = x + self.drop_path1(self.attn(norm1(x), affine=affine1)[0])
        return x + self.drop_path2(self.mlp(norm2(x), affine=affine2))

    def forward_first_token(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, 1, D): this block's output at token 0 alone (speed option last_block_cls).

        A pool="cls" model's head reads only the class token out of the last block, and nothing
        reads the other tokens' outputs there: every token still gives keys and values, but the
        query, proj, LayerNorm 2, the MLP and both residual adds run on token 0's row only. Plain
        LayerNorms and adds (no fold_norm, no residual_epilogue): at one row per image they are cheap.
        """
        first = x[:, :1] + self.drop_path1(self.attn.forward_first_query(self.norm1(x)))
        return first + self.drop_path2(self.mlp(self.norm2(first)))

    def _adds_in_matmuls(self, x: torch.Tensor) -> bool:
        """Whether the residual adds go inside proj's and fc2's matmuls: the switch is on, training, the
        stream already in the matmuls' dtype (bf16_residual under autocast; it would be rounded to
        it otherwise), and nothing random between branch and add (dropout, stochastic depth)."""
        if not (self.residual_epilogue and torch.is_grad_enabled() and x.dtype == matmul_dtype(x)):
            return False
        return not self.training or not any(
            p > 0 for p in (self.drop_path1.p, self.drop_path2.p, self.attn.proj_drop.p, self.mlp.drop.p))

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like forward, also returning this block's (B, heads, N, N) attention weights."""
        a, weights = self.attn(self.norm1(x), need_weights=True)
        x = x + self.drop_path1(a)
        return x + self.drop_path2(self.mlp(self.norm2(x))), weights
