"""Small raw files in each public dataset's real format, rendered from one hand-made scenario.

The scenario (item lists per session; times in units of the dataset's split span D before the
split point T, sessions lasting minutes):

    S1 -3.0D  A B C        S5 -1.6D  A B E        S9  -2.5D  A Z   (Z is rare)
    S2 -2.9D  B C D E      S6 -1.5D  D E B        S10 -2.4D  B     (one event)
    S3 -2.8D  A A C D      S7 -0.6D  A B C
    S4 -2.7D  C D E        S8 at T   D E A        (S1 and S2 are one user, 2+ hours apart)

Hand-computed results, after removing consecutive repeats (S3 -> A C D) and filtering until
stable (S10 goes, so B has 5 events; Z has 1 and goes, then S9 = A goes, so A has 5):
  train_full S1-S6: 19 events, 6 sessions, 5 items; test S7-S8: 6, 2, 5;
  train_tr S1-S4: 13, 4, 5; train_valid S5-S6: 6, 2, 4 (A B D E).
RSC15 keeps repeats and filters once (S3 has 4 events): train_full 20, 6, 5; test 6, 2, 5;
  train_tr 14, 4, 5; train_valid 6, 2, 4.
"""
import datetime as dt

EXPECTED = {'train_full': (19, 6, 5), 'test': (6, 2, 5), 'train_tr': (13, 4, 5), 'train_valid': (6, 2, 4)}
EXPECTED_RSC15 = {'train_full': (20, 6, 5), 'test': (6, 2, 5), 'train_tr': (14, 4, 5), 'train_valid': (6, 2, 4)}

SESSIONS = [  # (number, user, start in spans before T, items)
    (1, 1, -3.0, 'ABC'), (2, 1, -2.9, 'BCDE'), (3, 2, -2.8, 'AACD'), (4, 3, -2.7, 'CDE'), (5, 4, -1.6, 'ABE'),
    (6, 5, -1.5, 'DEB'), (7, 6, -0.6, 'ABC'), (8, 7, None, 'DEA'), (9, 8, -2.5, 'AZ'), (10, 9, -2.4, 'B'),
]
ITEM_IDS = {c: 101 + i for i, c in enumerate('ABCDE')}
ITEM_IDS['Z'] = 199
STEP_S = 120  # two minutes between the events of a session


def events(T, span, unit=1):
    """(session, user, item id, time) in the dataset's time unit (1 = seconds, 1000 = ms)."""
    rows = []
    for number, user, start, items in SESSIONS:
        t0 = T - (len(items) - 1) * STEP_S * unit if start is None else T + int(start * span)
        rows += [(number, user, ITEM_IDS[c], t0 + k * STEP_S * unit) for k, c in enumerate(items)]
    return rows


def _iso(seconds, fmt):
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime(fmt)


def write_yoochoose(folder, T=1411948800, span=86400):
    """yoochoose-clicks.dat and yoochoose-test.dat (S7, S8): session,timestamp,item,category; no header."""
    rows = events(T, span)
    for name, keep in (('yoochoose-clicks.dat', lambda s: s < 7 or s > 8), ('yoochoose-test.dat', lambda s: 7 <= s <= 8)):
        with open(str(folder / name), 'w') as f:
            for s, _, item, t in rows:
                if keep(s):
                    f.write('{},{}.{:03d}Z,{},0\n'.format(s, _iso(t, '%Y-%m-%dT%H:%M:%S'), 123, item))


def write_rsc15(folder, T=1411948800, span=86400):
    rows = events(T, span)
    with open(str(folder / 'yoochoose-clicks.dat'), 'w') as f:
        for s, _, item, t in rows:
            f.write('{},{}.456Z,{},0\n'.format(s, _iso(t, '%Y-%m-%dT%H:%M:%S'), item))


def write_rees46(folder, T=1575158400, span=86400):
    """2019-Oct.csv / 2019-Nov.csv with their real header; a cart event inside S1 is not a view."""
    header = 'event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n'
    rows = events(T, span)
    lines = ['{} UTC,view,{},2053013555631882655,electronics.smartphone,apple,99.99,{},sess-{}\n'.format(
        _iso(t, '%Y-%m-%d %H:%M:%S'), item, 500000000 + u, s) for s, u, item, t in rows]
    lines.insert(1, '{} UTC,cart,{},1,,,1.00,{},sess-1\n'.format(_iso(rows[0][3] + 30, '%Y-%m-%d %H:%M:%S'),
                                                                  ITEM_IDS['E'], 500000001))
    with open(str(folder / '2019-Oct.csv'), 'w') as f:
        f.write(header + ''.join(lines[:9]))
    with open(str(folder / '2019-Nov.csv'), 'w') as f:
        f.write(header + ''.join(lines[9:]))


def write_retailrocket(folder, T=1442545200000, span=7 * 86400000):
    """events.csv: timestamp,visitorid,event,itemid,transactionid (ms); an addtocart inside S1."""
    rows = events(T, span, unit=1000)
    lines = ['{},{},view,{},\n'.format(t, 1000 + u, item) for s, u, item, t in rows]
    lines.append('{},{},addtocart,{},\n'.format(rows[0][3] + 30000, 1001, ITEM_IDS['E']))
    with open(str(folder / 'events.csv'), 'w') as f:
        f.write('timestamp,visitorid,event,itemid,transactionid\n' + ''.join(reversed(lines)))


def write_coveo(folder, T=1545782400000, span=86400000):
    """release_10_23_2020.csv: browsing events (ms); pageviews without a product are not views."""
    rows = events(T, span, unit=1000)
    lines = ['{},event_product,detail,sku{:x},{},url{}\n'.format('h{:04x}'.format(u), item, t, item)
             for s, u, item, t in rows]
    lines.append('{},pageview,,,{},urlx\n'.format('h0001', rows[0][3] + 1000))
    with open(str(folder / 'release_10_23_2020.csv'), 'w') as f:
        f.write('session_id_hash,event_type,product_action,product_skus_hash,server_timestamp_epoch_ms,hashed_url\n')
        f.write(''.join(lines))


def write_diginetica(folder, T=1464739200000, span=7 * 86400000):
    """train-item-views.csv (;-separated); time = the session's first date + timeframe (ms)."""
    rows = events(T, span, unit=1000)
    first = {}
    for s, _, _, t in rows:
        first[s] = min(first.get(s, t), t)
    with open(str(folder / 'train-item-views.csv'), 'w') as f:
        f.write('sessionId;userId;itemId;timeframe;eventdate\n')
        for s, _, item, t in rows:
            day_ms = first[s] // 86400000 * 86400000
            f.write('{};NA;{};{};{}\n'.format(s, item, t - day_ms, _iso(day_ms // 1000, '%Y-%m-%d')))


def write_retailrocket_from(df, folder, T=1442545200000):
    """Render generated sessions (SessionId, ItemId, Time in s) as RetailRocket events, one visitor per
    session, time stretched 30x to span about a month ending two days after the split point."""
    t = T + 2 * 86400000 - (df.Time.max() - df.Time.values) * 30 * 1000
    with open(str(folder / 'events.csv'), 'w') as f:
        f.write('timestamp,visitorid,event,itemid,transactionid\n')
        for ts, v, item in zip(t, df.SessionId.values, df.ItemId.values):
            f.write('{},{},view,{},\n'.format(ts, v, item))
