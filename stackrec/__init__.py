"""StackRec (Wang, Yuan et al., SIGIR 2021): very deep sequential recommenders trained by iterative
stacking: its base models, the stacking methods and the released data handling
(../shared/reference/stackrec.md)."""
