"""The folder bridge: packages dropped in a folder go to the hub; deliveries come back."""
