"""The search room: controllers, rewards, strategies (one-shot, multi-trial, Ray trials), the
search loop, the differentiable width/depth search, the cleaning proxy and plots."""
