"""Forms of the managers' approval pages."""

from decimal import Decimal

from django import forms

COMMENT_MAX = 2000


class DecisionForm(forms.Form):
    """Approve or reject: a comment is required, so every decision says why (SPEC 2.5)."""

    comment = forms.CharField(
        max_length=COMMENT_MAX,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why: recorded with your name and shown in the history.",
    )

    def clean_comment(self) -> str:
        comment = self.cleaned_data["comment"].strip()
        if not comment:
            raise forms.ValidationError("Say why.")
        return comment


class ApproveForm(DecisionForm):
    approved_amount = forms.DecimalField(
        required=False,
        min_value=Decimal("0"),
        max_digits=28,
        decimal_places=10,
        help_text="Leave empty to approve the requested amount.",
    )
