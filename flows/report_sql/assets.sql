SELECT symbol, name, asset_class FROM dim_asset ORDER BY symbol
