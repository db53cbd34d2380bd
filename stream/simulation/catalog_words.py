"""Vocabulary for the synthetic catalogue: categories, brands, title words, reviews, queries.

Every leaf category carries its path, product nouns and attributes in both Chinese and English,
so a title built from it yields meaningful tags for jieba (Chinese) or a simple English
tokeniser. Noun lists of a leaf are aligned by meaning across the two languages (index *k* in
``nouns_zh`` and ``nouns_en`` name the same kind of product), which lets a review or search in
the user's language refer to a product listed in the other language.

Word lists are written as ``|``-separated strings to keep this data file compact; they are
parsed once at import.
"""

from __future__ import annotations

from dataclasses import dataclass


def _split(words: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in words.split("|") if w.strip())


@dataclass(frozen=True)
class Leaf:
    """A leaf category: path below the root, product nouns, attributes and median price."""

    path_zh: tuple[str, ...]
    path_en: tuple[str, ...]
    nouns_zh: tuple[str, ...]
    nouns_en: tuple[str, ...]
    attrs_zh: tuple[str, ...]
    attrs_en: tuple[str, ...]
    median_price_cny: float


@dataclass(frozen=True)
class TopCategory:
    """A top-level category with its brands, variants and price spread."""

    key: str
    zh: str
    en: str
    weight: float  # share of the catalogue and of user interests
    price_sigma: float  # log-normal sigma of prices around each leaf's median
    max_quantity: int  # consumables are bought several at a time
    brands: tuple[tuple[str, str], ...]  # (Chinese name, English name)
    variants_zh: tuple[str, ...]
    variants_en: tuple[str, ...]
    leaves: tuple[Leaf, ...]


def _leaf(
    path_zh: str,
    path_en: str,
    nouns_zh: str,
    nouns_en: str,
    attrs_zh: str,
    attrs_en: str,
    median: float,
) -> Leaf:
    return Leaf(
        path_zh=tuple(path_zh.split("/")),
        path_en=tuple(path_en.split("/")),
        nouns_zh=_split(nouns_zh),
        nouns_en=_split(nouns_en),
        attrs_zh=_split(attrs_zh),
        attrs_en=_split(attrs_en),
        median_price_cny=median,
    )


def _top(
    key: str,
    zh: str,
    en: str,
    *,
    weight: float,
    sigma: float,
    max_quantity: int,
    brands: str,
    variants_zh: str,
    variants_en: str,
    leaves: tuple[Leaf, ...],
) -> TopCategory:
    pairs = tuple((b.split(":", 1)[0], b.split(":", 1)[1]) for b in _split(brands))
    return TopCategory(
        key=key,
        zh=zh,
        en=en,
        weight=weight,
        price_sigma=sigma,
        max_quantity=max_quantity,
        brands=pairs,
        variants_zh=_split(variants_zh),
        variants_en=_split(variants_en),
        leaves=leaves,
    )


# One row per leaf: Chinese path, English path, nouns zh/en, attributes zh/en, median CNY.
# fmt: off
CATEGORIES: tuple[TopCategory, ...] = (
    _top(
        "electronics", "电子产品", "Electronics", weight=0.14, sigma=0.45, max_quantity=2,
        brands="华为:Huawei|小米:Xiaomi|Apple:Apple|索尼:Sony|联想:Lenovo|三星:Samsung"
        "|漫步者:Edifier|大疆:DJI",
        variants_zh="曜石黑|冰川白|远峰蓝|星光银|午夜黑",
        variants_en="Black|White|Blue|Silver|Midnight",
        leaves=(
            _leaf("手机/智能手机", "Phones/Smartphones",
                  "智能手机|5G手机|拍照手机", "Smartphone|5G Phone|Camera Phone",
                  "轻薄|长续航|快充|高刷屏|大内存",
                  "Slim|Long-Battery|Fast-Charging|120Hz|Flagship", 2999),
            _leaf("音频/耳机", "Audio/Headphones",
                  "蓝牙耳机|降噪耳机|头戴式耳机|运动耳机",
                  "Bluetooth Earbuds|Noise Cancelling Headphones|Over-Ear Headphones"
                  "|Sport Earphones",
                  "无线|主动降噪|低延迟|入耳式|长续航",
                  "Wireless|Active Noise Cancelling|Low-Latency|In-Ear|Hi-Res", 399),
            _leaf("音频/音箱", "Audio/Speakers",
                  "蓝牙音箱|智能音箱|便携音箱", "Bluetooth Speaker|Smart Speaker|Portable Speaker",
                  "防水|重低音|无线|户外", "Waterproof|Deep Bass|Wireless|Outdoor", 299),
            _leaf("电脑/笔记本电脑", "Computers/Laptops",
                  "笔记本电脑|游戏本|轻薄本", "Laptop|Gaming Laptop|Ultrabook",
                  "轻薄|高性能|长续航|高色域", "Thin|High-Performance|Long-Battery|OLED", 5999),
            _leaf("电脑/平板电脑", "Computers/Tablets",
                  "平板电脑|绘画平板|学习平板", "Tablet|Drawing Tablet|Kids Tablet",
                  "护眼|大屏|轻薄", "Eye-Care|Large-Screen|Lightweight", 2499),
            _leaf("智能穿戴/智能手表", "Wearables/Smartwatches",
                  "智能手表|运动手环|儿童手表", "Smartwatch|Fitness Tracker|Kids Watch",
                  "心率监测|血氧检测|GPS定位|防水", "Heart-Rate|Blood-Oxygen|GPS|Waterproof", 899),
            _leaf("摄影摄像/运动相机", "Cameras/Action Cameras",
                  "运动相机|微单相机|无人机", "Action Camera|Mirrorless Camera|Drone",
                  "4K|防抖|高清|夜景", "4K|Stabilized|HD|Low-Light", 2999),
        ),
    ),
    _top(
        "apparel", "服饰", "Apparel", weight=0.14, sigma=0.6, max_quantity=3,
        brands="优衣库:Uniqlo|ZARA:ZARA|李宁:Li-Ning|太平鸟:Peacebird|波司登:Bosideng"
        "|H&M:H&M|Levi's:Levi's|森马:Semir",
        variants_zh="黑色|白色|藏青|卡其|S码|M码|L码|XL码",
        variants_en="Black|White|Navy|Khaki|Size S|Size M|Size L|Size XL",
        leaves=(
            _leaf("女装/连衣裙", "Women/Dresses",
                  "连衣裙|碎花裙|长裙", "Dress|Floral Dress|Maxi Dress",
                  "夏季|显瘦|法式|雪纺|收腰", "Summer|Slim-Fit|French-Style|Chiffon|Wrap", 259),
            _leaf("女装/外套", "Women/Coats",
                  "羽绒服|风衣|毛呢大衣", "Down Jacket|Trench Coat|Wool Coat",
                  "冬季|保暖|长款|宽松", "Winter|Warm|Long|Oversized", 599),
            _leaf("男装/T恤", "Men/T-Shirts",
                  "T恤|短袖|POLO衫", "T-Shirt|Crew Tee|Polo Shirt",
                  "纯棉|宽松|速干|印花", "Cotton|Relaxed|Quick-Dry|Graphic", 99),
            _leaf("男装/牛仔裤", "Men/Jeans",
                  "牛仔裤|休闲裤|直筒裤", "Jeans|Chinos|Straight-Leg Jeans",
                  "修身|弹力|直筒|水洗", "Slim|Stretch|Straight|Washed", 299),
            _leaf("鞋靴/运动鞋", "Shoes/Sneakers",
                  "运动鞋|跑步鞋|板鞋|小白鞋",
                  "Sneakers|Running Shoes|Skate Shoes|White Sneakers",
                  "透气|轻便|减震|百搭", "Breathable|Lightweight|Cushioned|Classic", 399),
            _leaf("箱包/背包", "Bags/Backpacks",
                  "双肩包|旅行包|通勤包", "Backpack|Travel Bag|Laptop Backpack",
                  "大容量|防水|轻便", "Large-Capacity|Water-Resistant|Lightweight", 199),
        ),
    ),
    _top(
        "home", "家居", "Home", weight=0.10, sigma=0.6, max_quantity=3,
        brands="宜家:IKEA|无印良品:MUJI|苏泊尔:Supor|乐扣乐扣:LocknLock|双立人:Zwilling"
        "|网易严选:Yanxuan|水星家纺:Mercury|哈里欧:Hario",
        variants_zh="白色|灰色|原木色|两件套",
        variants_en="White|Grey|Natural Wood|Set of 2",
        leaves=(
            _leaf("厨房/咖啡", "Kitchen/Coffee",
                  "咖啡杯|手冲壶|磨豆机|法压壶",
                  "Coffee Mug|Pour-Over Kettle|Coffee Grinder|French Press",
                  "陶瓷|不锈钢|手冲|便携", "Ceramic|Stainless Steel|Pour-Over|Portable", 129),
            _leaf("厨房/锅具", "Kitchen/Cookware",
                  "炒锅|不粘锅|汤锅|铸铁锅", "Wok|Non-Stick Pan|Stock Pot|Cast Iron Skillet",
                  "不粘|少油烟|铸铁|电磁炉通用", "Non-Stick|Cast Iron|Induction-Ready|Tri-Ply",
                  299),
            _leaf("家纺/床品", "Bedding/Sheets",
                  "四件套|被子|枕头|乳胶枕", "Bed Sheet Set|Duvet|Pillow|Memory Foam Pillow",
                  "纯棉|亲肤|抗菌|加厚", "Cotton|Breathable|Hypoallergenic|Cooling", 299),
            _leaf("收纳/收纳盒", "Storage/Organizers",
                  "收纳盒|收纳箱|衣架", "Storage Box|Storage Bin|Hangers",
                  "大容量|可折叠|透明|防尘", "Stackable|Foldable|Clear|Dustproof", 59),
            _leaf("家具/椅子", "Furniture/Chairs",
                  "人体工学椅|办公椅|餐椅", "Ergonomic Chair|Office Chair|Dining Chair",
                  "人体工学|可调节|实木|透气网布", "Ergonomic|Adjustable|Solid Wood|Mesh", 899),
        ),
    ),
    _top(
        "beauty", "美妆", "Beauty", weight=0.10, sigma=0.55, max_quantity=3,
        brands="兰蔻:Lancome|雅诗兰黛:Estee Lauder|欧莱雅:L'Oreal|完美日记:Perfect Diary"
        "|花西子:Florasis|珀莱雅:Proya|薇诺娜:Winona|资生堂:Shiseido",
        variants_zh="30ml|50ml|100ml|礼盒装",
        variants_en="30ml|50ml|100ml|Gift Set",
        leaves=(
            _leaf("护肤/面霜", "Skincare/Moisturizers",
                  "面霜|精华液|乳液", "Face Cream|Serum|Lotion",
                  "保湿|补水|抗老|修护|美白",
                  "Hydrating|Moisturizing|Anti-Aging|Repairing|Brightening", 299),
            _leaf("护肤/面膜", "Skincare/Masks",
                  "面膜|睡眠面膜|泥膜", "Sheet Mask|Sleeping Mask|Clay Mask",
                  "补水|清洁|舒缓", "Hydrating|Purifying|Soothing", 99),
            _leaf("彩妆/口红", "Makeup/Lipstick",
                  "口红|唇釉|润唇膏", "Lipstick|Lip Gloss|Lip Balm",
                  "哑光|滋润|持久|显白", "Matte|Moisturizing|Long-Lasting|Velvet", 199),
            _leaf("彩妆/粉底", "Makeup/Foundation",
                  "粉底液|气垫|遮瑕膏", "Foundation|Cushion Compact|Concealer",
                  "持妆|控油|遮瑕|轻薄", "Long-Wear|Oil-Control|Full-Coverage|Lightweight", 259),
            _leaf("香水", "Fragrance",
                  "香水|淡香水|香氛喷雾", "Perfume|Eau de Toilette|Body Mist",
                  "花香|木质调|清新|持久", "Floral|Woody|Fresh|Long-Lasting", 599),
        ),
    ),
    _top(
        "baby", "母婴", "Baby", weight=0.07, sigma=0.5, max_quantity=6,
        brands="帮宝适:Pampers|花王:Merries|飞鹤:Feihe|美赞臣:Enfamil|贝亲:Pigeon"
        "|好孩子:Goodbaby|爱他美:Aptamil|babycare:babycare",
        variants_zh="1段|2段|3段|大包装",
        variants_en="Stage 1|Stage 2|Stage 3|Value Pack",
        leaves=(
            _leaf("尿裤湿巾/纸尿裤", "Diapering/Diapers",
                  "纸尿裤|拉拉裤|婴儿湿巾", "Diapers|Pull-Ups|Baby Wipes",
                  "超薄|透气|干爽|夜用", "Ultra-Thin|Breathable|Overnight|Sensitive", 129),
            _leaf("奶粉/婴儿奶粉", "Feeding/Formula",
                  "婴儿奶粉|配方奶粉|羊奶粉", "Infant Formula|Baby Formula|Goat Milk Formula",
                  "有机|易消化|进口|A2", "Organic|Gentle|Imported|A2", 299),
            _leaf("喂养用品/奶瓶", "Feeding/Bottles",
                  "奶瓶|吸管杯|辅食机", "Baby Bottle|Sippy Cup|Baby Food Maker",
                  "防胀气|宽口径|PPSU|硅胶", "Anti-Colic|Wide-Neck|BPA-Free|Silicone", 119),
            _leaf("童车童床/婴儿推车", "Travel/Strollers",
                  "婴儿推车|安全座椅|腰凳", "Stroller|Car Seat|Baby Carrier",
                  "轻便|可折叠|高景观|双向", "Lightweight|Foldable|Reversible|Compact", 1299),
        ),
    ),
    _top(
        "sports", "运动户外", "Sports & Outdoors", weight=0.08, sigma=0.6, max_quantity=2,
        brands="耐克:Nike|阿迪达斯:Adidas|安踏:Anta|迪卡侬:Decathlon|始祖鸟:Arc'teryx"
        "|北面:The North Face|牧高笛:Mobi Garden|Keep:Keep",
        variants_zh="黑色|蓝色|军绿|均码",
        variants_en="Black|Blue|Olive|One Size",
        leaves=(
            _leaf("健身/瑜伽", "Fitness/Yoga",
                  "瑜伽垫|瑜伽裤|弹力带", "Yoga Mat|Yoga Leggings|Resistance Band",
                  "防滑|加厚|高弹|环保", "Non-Slip|Thick|High-Stretch|Eco-Friendly", 129),
            _leaf("健身/器械", "Fitness/Equipment",
                  "哑铃|跳绳|健腹轮", "Dumbbells|Jump Rope|Ab Roller",
                  "可调节|家用|静音", "Adjustable|Home Gym|Quiet", 199),
            _leaf("户外/露营", "Outdoor/Camping",
                  "帐篷|睡袋|露营椅|天幕", "Tent|Sleeping Bag|Camping Chair|Tarp",
                  "防雨|轻量化|自动速开|便携", "Waterproof|Ultralight|Instant|Portable", 499),
            _leaf("户外/徒步", "Outdoor/Hiking",
                  "登山鞋|冲锋衣|登山杖", "Hiking Boots|Rain Jacket|Trekking Poles",
                  "防水|透气|防滑|GORE-TEX", "Waterproof|Breathable|Grippy|GORE-TEX", 799),
            _leaf("骑行", "Cycling",
                  "自行车|骑行头盔|骑行服", "Bike|Cycling Helmet|Cycling Jersey",
                  "公路|山地|轻量", "Road|Mountain|Lightweight", 899),
        ),
    ),
    _top(
        "books", "图书", "Books", weight=0.06, sigma=0.4, max_quantity=2,
        brands="人民文学出版社:People's Literature|中信出版社:CITIC Press"
        "|机械工业出版社:China Machine Press|企鹅:Penguin|O'Reilly:O'Reilly"
        "|哈珀柯林斯:HarperCollins|译林出版社:Yilin Press|接力出版社:Jieli",
        variants_zh="平装|精装|典藏版",
        variants_en="Paperback|Hardcover|Collector's Edition",
        leaves=(
            _leaf("小说/科幻", "Fiction/Science Fiction",
                  "科幻小说|长篇小说|短篇小说集", "Sci-Fi Novel|Novel|Short Stories",
                  "经典|获奖|畅销|新版", "Classic|Award-Winning|Bestselling|New", 49),
            _leaf("小说/悬疑", "Fiction/Mystery",
                  "悬疑小说|推理小说|侦探小说", "Mystery Novel|Thriller|Detective Novel",
                  "烧脑|经典|畅销", "Gripping|Classic|Bestselling", 45),
            _leaf("计算机/编程", "Computing/Programming",
                  "编程入门|Python编程|算法|机器学习",
                  "Programming Guide|Python Handbook|Algorithms|Machine Learning",
                  "实战|入门|进阶|第3版", "Hands-On|Beginner's|Advanced|3rd Edition", 89),
            _leaf("童书/绘本", "Children's Books/Picture Books",
                  "绘本|儿童读物|科普百科", "Picture Book|Children's Book|Science Encyclopedia",
                  "彩色|注音|启蒙|全套", "Illustrated|Bedtime|Early-Learning|Boxed Set", 59),
            _leaf("经管/投资理财", "Business/Finance",
                  "管理学|商业案例|投资理财", "Management Book|Business Strategy|Personal Finance",
                  "畅销|经典|实用", "Bestselling|Classic|Practical", 59),
        ),
    ),
    _top(
        "food", "食品", "Grocery", weight=0.09, sigma=0.5, max_quantity=6,
        brands="三只松鼠:Three Squirrels|良品铺子:Bestore|蒙牛:Mengniu|伊利:Yili"
        "|农夫山泉:Nongfu Spring|雀巢:Nestle|星巴克:Starbucks|五芳斋:Wufangzhai",
        variants_zh="500g|1kg|礼盒装|12瓶装",
        variants_en="500g|1kg|Gift Box|12-Pack",
        leaves=(
            _leaf("休闲零食/坚果", "Snacks/Nuts",
                  "坚果|每日坚果|碧根果|夏威夷果", "Mixed Nuts|Trail Mix|Pecans|Macadamia Nuts",
                  "原味|低盐|烘焙|独立包装",
                  "Roasted|Lightly Salted|Unsalted|Individually Wrapped", 69),
            _leaf("休闲零食/饼干", "Snacks/Biscuits",
                  "饼干|曲奇|薯片", "Crackers|Cookies|Potato Chips",
                  "低糖|酥脆|全麦", "Low-Sugar|Crispy|Whole-Grain", 29),
            _leaf("饮料冲调/咖啡", "Beverages/Coffee",
                  "咖啡豆|挂耳咖啡|速溶咖啡|冷萃咖啡",
                  "Coffee Beans|Drip Coffee Bags|Instant Coffee|Cold Brew",
                  "阿拉比卡|深烘|中烘|无糖", "Arabica|Dark Roast|Medium Roast|Sugar-Free", 89),
            _leaf("饮料冲调/茶叶", "Beverages/Tea",
                  "绿茶|红茶|乌龙茶|普洱茶", "Green Tea|Black Tea|Oolong Tea|Pu-erh Tea",
                  "明前|特级|花香|罐装", "Premium|Loose-Leaf|Fragrant|Tin", 129),
            _leaf("乳品/牛奶", "Dairy/Milk",
                  "纯牛奶|酸奶|奶酪", "Whole Milk|Yogurt|Cheese",
                  "有机|全脂|低脂|高钙", "Organic|Whole|Low-Fat|High-Calcium", 59),
        ),
    ),
    _top(
        "appliances", "家用电器", "Appliances", weight=0.07, sigma=0.5, max_quantity=1,
        brands="美的:Midea|格力:Gree|海尔:Haier|戴森:Dyson|九阳:Joyoung|飞利浦:Philips"
        "|科沃斯:Ecovacs|石头:Roborock",
        variants_zh="白色|灰色|标准版|旗舰版",
        variants_en="White|Grey|Standard|Pro",
        leaves=(
            _leaf("厨房电器/电饭煲", "Kitchen Appliances/Rice Cookers",
                  "电饭煲|电压力锅", "Rice Cooker|Pressure Cooker",
                  "智能|IH加热|大容量|预约", "Smart|Induction|Large-Capacity|Programmable", 399),
            _leaf("厨房电器/空气炸锅", "Kitchen Appliances/Air Fryers",
                  "空气炸锅|电烤箱", "Air Fryer|Toaster Oven",
                  "可视|无油|大容量|多功能", "Digital|Oil-Free|XL|Multi-Function", 349),
            _leaf("清洁电器/扫地机器人", "Cleaning/Robot Vacuums",
                  "扫地机器人|洗地机|吸尘器", "Robot Vacuum|Wet-Dry Vacuum|Cordless Vacuum",
                  "自动集尘|激光导航|无线|大吸力", "Self-Emptying|LiDAR|Cordless|High-Suction",
                  2499),
            _leaf("个护电器/吹风机", "Personal Care/Hair Dryers",
                  "吹风机|卷发棒|电动牙刷", "Hair Dryer|Curling Iron|Electric Toothbrush",
                  "负离子|速干|恒温|声波", "Ionic|Fast-Drying|Temperature-Control|Sonic", 399),
            _leaf("生活电器/空气净化器", "Climate/Air Purifiers",
                  "空气净化器|加湿器|电风扇", "Air Purifier|Humidifier|Tower Fan",
                  "除甲醛|静音|智能|HEPA", "Formaldehyde-Removing|Quiet|Smart|HEPA", 1299),
        ),
    ),
    _top(
        "pets", "宠物", "Pet Supplies", weight=0.05, sigma=0.5, max_quantity=4,
        brands="皇家:Royal Canin|渴望:Orijen|麦富迪:Myfoodie|比瑞吉:Nature Bridge"
        "|伯纳天纯:Pure&Natural|小佩:Petkit|霍曼:Homerun|KONG:KONG",
        variants_zh="1.5kg|2kg|10kg|小型犬|成猫",
        variants_en="1.5kg|2kg|10kg|Small Breed|Adult Cat",
        leaves=(
            _leaf("猫/猫粮", "Cats/Cat Food",
                  "猫粮|猫罐头|冻干猫零食", "Cat Food|Wet Cat Food|Freeze-Dried Treats",
                  "无谷|高蛋白|全价|幼猫", "Grain-Free|High-Protein|Complete|Kitten", 199),
            _leaf("猫/猫砂", "Cats/Litter",
                  "猫砂|豆腐猫砂|猫砂盆", "Cat Litter|Tofu Litter|Litter Box",
                  "除臭|结团|低尘", "Odor-Control|Clumping|Low-Dust", 59),
            _leaf("狗/狗粮", "Dogs/Dog Food",
                  "狗粮|狗零食|磨牙棒", "Dog Food|Dog Treats|Dental Chews",
                  "无谷|天然|成犬|小型犬", "Grain-Free|Natural|Adult|Small-Breed", 229),
            _leaf("狗/出行", "Dogs/Walking",
                  "牵引绳|胸背带|宠物背包", "Dog Leash|Harness|Pet Carrier",
                  "反光|可伸缩|透气", "Reflective|Retractable|Breathable", 89),
        ),
    ),
    _top(
        "toys", "玩具", "Toys", weight=0.05, sigma=0.6, max_quantity=2,
        brands="乐高:LEGO|泡泡玛特:Pop Mart|万代:Bandai|美泰:Mattel|孩之宝:Hasbro"
        "|贝恩施:Beiens|布鲁可:Bloks|费雪:Fisher-Price",
        variants_zh="标准版|豪华版|全套",
        variants_en="Standard|Deluxe|Complete Set",
        leaves=(
            _leaf("积木/拼装积木", "Building Toys/Building Sets",
                  "积木|拼装模型|机器人积木", "Building Set|Model Kit|Robot Kit",
                  "益智|大颗粒|科技|城市系列", "Educational|Large-Brick|Technic|City", 399),
            _leaf("潮玩/手办", "Collectibles/Figures",
                  "手办|盲盒|公仔", "Action Figure|Blind Box|Plush Figure",
                  "限定|正版|收藏级", "Limited|Official|Collector's", 129),
            _leaf("益智玩具/拼图", "Games/Puzzles",
                  "拼图|桌游|魔方", "Jigsaw Puzzle|Board Game|Rubik's Cube",
                  "1000片|亲子|益智", "1000-Piece|Family|Brain-Teaser", 79),
            _leaf("遥控玩具/遥控车", "Remote Control/RC Cars",
                  "遥控车|遥控飞机|遥控船", "RC Car|RC Plane|RC Boat",
                  "高速|越野|充电", "High-Speed|Off-Road|Rechargeable", 259),
        ),
    ),
    _top(
        "automotive", "汽车用品", "Automotive", weight=0.05, sigma=0.55, max_quantity=4,
        brands="米其林:Michelin|3M:3M|博世:Bosch|70迈:70mai|固特异:Goodyear|壳牌:Shell"
        "|美孚:Mobil|途虎:Tuhu",
        variants_zh="通用款|黑色|4L|1L",
        variants_en="Universal|Black|4L|1L",
        leaves=(
            _leaf("车载电器/行车记录仪", "Car Electronics/Dash Cams",
                  "行车记录仪|车载充电器|车载支架", "Dash Cam|Car Charger|Phone Mount",
                  "高清|夜视|4K|无线", "HD|Night-Vision|4K|Wireless", 399),
            _leaf("维修保养/机油", "Maintenance/Motor Oil",
                  "机油|全合成机油|雨刮器", "Motor Oil|Synthetic Oil|Wiper Blades",
                  "全合成|5W-30|长效", "Full-Synthetic|5W-30|Long-Life", 299),
            _leaf("汽车内饰/座垫", "Interior/Seat Covers",
                  "座垫|脚垫|头枕", "Seat Cover|Floor Mats|Neck Pillow",
                  "四季通用|真皮|透气|全包围", "All-Season|Leather|Breathable|Custom-Fit", 299),
            _leaf("美容清洗/洗车", "Car Care/Car Wash",
                  "洗车液|车蜡|洗车毛巾", "Car Wash Soap|Car Wax|Microfiber Towel",
                  "镀膜|去污|不伤漆", "Ceramic|Deep-Cleaning|Paint-Safe", 69),
        ),
    ),
)
# fmt: on

# Optional title prefixes, on a minority of titles only: they carry no interest signal.
EDITION_ZH: tuple[str, ...] = ("新款", "2026款", "升级款", "官方正品")
EDITION_EN: tuple[str, ...] = ("New", "2026", "Upgraded", "Official")

# Review sentences by sentiment; ``{noun}`` is the product noun in the reviewer's language.
REVIEW_ZH: dict[str, tuple[str, ...]] = {
    "pos_lead": (
        "{noun}收到了，做工很精致，和描述一致。",
        "这款{noun}真的很好用，超出预期。",
        "第二次买这个{noun}了，质量一如既往地好。",
        "{noun}颜值很高，细节处理得很到位。",
    ),
    "pos": (
        "物流很快，包装完好。",
        "性价比很高，会回购。",
        "已经推荐给朋友了，值得购买！",
        "客服态度很好，有问必答。",
        "用了一周，整体非常满意。",
    ),
    "mid_lead": (
        "{noun}还可以，中规中矩。",
        "{noun}和图片有一点色差，不过能接受。",
        "这个价位的{noun}，算是正常水平吧。",
    ),
    "mid": (
        "价格稍微有点贵。",
        "物流一般，等了好几天。",
        "再用一段时间看看效果。",
    ),
    "neg_lead": (
        "{noun}质量太差了，和图片完全不一样。",
        "买的{noun}用了两天就坏了，很失望。",
        "{noun}做工粗糙，有明显瑕疵。",
    ),
    "neg": (
        "物流太慢，包装也破损了。",
        "客服一直不回复，体验很差。",
        "不推荐购买，已经申请退货。",
        "性价比很低，后悔买了。",
    ),
}
REVIEW_EN: dict[str, tuple[str, ...]] = {
    "pos_lead": (
        "The {noun} arrived quickly and looks exactly like the photos.",
        "Really happy with this {noun}, it exceeded my expectations.",
        "Second time buying this {noun} and the quality is still excellent.",
        "Great {noun}, well made and easy to use.",
    ),
    "pos": (
        "Packaging was perfect and delivery was fast.",
        "Great value for the price, I would buy again.",
        "Highly recommend it to anyone looking for one.",
        "Customer service was friendly and helpful.",
        "After a week of daily use I am very satisfied.",
    ),
    "mid_lead": (
        "The {noun} is okay, nothing special.",
        "This {noun} does the job, but the colour is a bit off.",
        "Decent {noun} for the price, with a few small flaws.",
    ),
    "mid": (
        "A little overpriced in my opinion.",
        "Shipping took longer than expected.",
        "I will see how it holds up over time.",
    ),
    "neg_lead": (
        "The {noun} feels cheap and looks nothing like the pictures.",
        "My {noun} stopped working after two days, very disappointed.",
        "Poor quality {noun} with obvious defects.",
    ),
    "neg": (
        "Delivery was slow and the box was damaged.",
        "Customer service never replied to my messages.",
        "Would not recommend, I have asked for a refund.",
        "Not worth the money at all.",
    ),
}

# Extra words that make English search queries look typed by a person.
QUERY_EXTRAS_EN: tuple[str, ...] = ("best", "cheap", "new", "gift", "sale", "2026")
QUERY_EXTRAS_ZH: tuple[str, ...] = ("推荐", "平价", "新款", "送礼", "正品", "2026")


def zh_vocabulary() -> list[str]:
    """Chinese brands, nouns and attributes, sorted: a jieba user dictionary for these titles."""
    words: set[str] = set()
    for top in CATEGORIES:
        words.update(b[0] for b in top.brands)
        for leaf in top.leaves:
            words.update(leaf.nouns_zh)
            words.update(leaf.attrs_zh)
    return sorted(w for w in words if any("\u4e00" <= ch <= "\u9fff" for ch in w))


ERASURE_REASONS: tuple[str, ...] = (
    "user-request",
    "account-closed",
    "gdpr-art17",
    "pipl-art47",
)
